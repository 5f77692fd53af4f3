package cassandrastore

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Half-hour and six-hour slots read before the layout's since are summed
// from quarters and hours: the same counts, groups and users as the rows a
// new keyspace keeps, whether since is before, inside or after the range.
func TestDerivedResolutions(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if !st.since.Equal(time.Unix(0, 0)) {
		t.Fatalf("a new keyspace keeps every resolution from %v, not from the start", st.since)
	}
	p := tenant.NewID()
	subs := []string{tenant.NewID(), tenant.NewID()}
	start := time.Now().UTC().Truncate(6 * time.Hour).Add(-18 * time.Hour)
	var evs []event.Event
	for i := range 1500 {
		ts := start.Add(time.Duration(i) * 37 * time.Second) // 15.4 hours
		evs = append(evs, event.Event{ID: fmt.Sprint("d-", i), PartnerID: p, SubSystemID: subs[i%2], EventType: fmt.Sprint("t", i%3),
			UserID: fmt.Sprint("u", i%700), Timestamp: ts})
	}
	for k := 0; k < len(evs); k += 500 {
		if _, err := st.WriteEvents(ctx, evs[k:k+500]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	type figures struct {
		counts []storage.Slot
		users  map[time.Time]uint64
	}
	read := func(res storage.Res, from, to time.Time) figures {
		t.Helper()
		var f figures
		var err error
		f.counts, err = st.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: res, From: from, To: to, Groups: true})
		if err != nil {
			t.Fatal(err)
		}
		f.users = map[time.Time]uint64{}
		var last time.Time
		err = st.Users(ctx, storage.UsersQuery{Scope: storage.SubSystemUsers, Key: subs[1], Res: res, From: from, To: to}, func(at time.Time, b []byte) error {
			if _, dup := f.users[at]; dup || at.Before(last) {
				return fmt.Errorf("slot %v again or out of order", at)
			}
			last = at
			var sk hll.Sketch
			if err := sk.MergeBinary(b); err != nil {
				return err
			}
			f.users[at] = sk.Estimate()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ranges := [][2]time.Time{
		{start, start.Add(24 * time.Hour)},
		{start.Add(40 * time.Minute), start.Add(7*time.Hour + 5*time.Minute)}, // ends inside a slot
		{start.Add(6 * time.Hour), start.Add(12 * time.Hour)},
	}
	for _, res := range []storage.Res{storage.HalfHour, storage.SixHours} {
		for _, r := range ranges {
			st.since = time.Unix(0, 0)
			want := read(res, r[0], r[1])
			if len(want.counts) == 0 || len(want.users) == 0 {
				t.Fatalf("%v [%v, %v): nothing stored", res, r[0], r[1])
			}
			for _, since := range []time.Time{start.Add(6 * time.Hour), start.Add(12 * time.Hour), start.Add(365 * 24 * time.Hour)} {
				st.since = since
				if got := read(res, r[0], r[1]); !reflect.DeepEqual(got, want) {
					t.Fatalf("%v [%v, %v) since %v:\n got %+v\nwant %+v", res, r[0], r[1], since, got, want)
				}
			}
		}
	}
	// And the sums are the quarters' and hours' own: every event counted.
	st.since = time.Unix(0, 0)
	var n int64
	for _, s := range read(storage.SixHours, start, start.Add(24*time.Hour)).counts {
		n += s.Total
	}
	if n != int64(len(evs)) {
		t.Fatalf("six-hour slots count %d of %d events", n, len(evs))
	}
}

// Migrate records since once: the start in a new keyspace, a day and some
// after the upgrade in one that holds counts, and never moves it.
func TestMarkResolutions(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	ks := st.cfg.Keyspace
	if err := markResolutions(ctx, st.s, ks, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := readSince(ctx, st.s); !got.Equal(time.Unix(0, 0)) {
		t.Fatalf("a new keyspace: since %v", got)
	}
	// A keyspace that held counts before the resolutions were added.
	if err := st.s.Query("DELETE FROM layout WHERE name = ?", resolutionsName).Exec(); err != nil {
		t.Fatal(err)
	}
	p := tenant.NewID()
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "m1", PartnerID: p, SubSystemID: tenant.NewID(), EventType: "v", Timestamp: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 13, 5, 0, 0, time.UTC)
	if err := markResolutions(ctx, st.s, ks, now); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC) // now + 24 h, up to six hours
	if got, _ := readSince(ctx, st.s); !got.Equal(want) {
		t.Fatalf("an upgraded keyspace: since %v, want %v", got, want)
	}
	if err := markResolutions(ctx, st.s, ks, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := readSince(ctx, st.s); !got.Equal(want) {
		t.Fatalf("a second migration moved since to %v", got)
	}
}
