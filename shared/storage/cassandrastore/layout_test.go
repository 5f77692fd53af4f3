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

// Half-hour, six-hour, half-past-hour and week slots read before the
// layout's since are summed from quarters, hours, half hours and days: the same counts, groups and users as the rows a
// new keyspace keeps, whether since is before, inside or after the range.
func TestDerivedResolutions(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if !st.since.Equal(time.Unix(0, 0)) || !st.halfPastSince.Equal(time.Unix(0, 0)) || !st.weekSince.Equal(time.Unix(0, 0)) {
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
		counts [3][]storage.Slot
		users  [2]map[time.Time]uint64
	}
	read := func(res storage.Res, from, to time.Time) figures {
		t.Helper()
		var f figures
		for i, q := range []storage.CountsQuery{
			{Rollup: storage.PartnerTypes, Key: p, Groups: true},
			{Rollup: storage.PartnerTypes, Key: p},                      // totals only: no groups
			{Rollup: storage.SubSystemTypes, Key: subs[0], Group: "t1"}, // one group
		} {
			q.Res, q.From, q.To = res, from, to
			var err error
			if f.counts[i], err = st.Counts(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for i, u := range []storage.UsersQuery{{Scope: storage.SubSystemUsers, Key: subs[1]}, {Scope: storage.PartnerUsers, Key: p}} {
			u.Res, u.From, u.To = res, from, to
			f.users[i] = map[time.Time]uint64{}
			var last time.Time
			err := st.Users(ctx, u, func(at time.Time, b []byte) error {
				if _, dup := f.users[i][at]; dup || at.Before(last) {
					return fmt.Errorf("slot %v again or out of order", at)
				}
				last = at
				var sk hll.Sketch
				if err := sk.MergeBinary(b); err != nil {
					return err
				}
				f.users[i][at] = sk.Estimate()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	ranges := [][2]time.Time{
		{start, start.Add(24 * time.Hour)},
		{start.Add(40 * time.Minute), start.Add(7*time.Hour + 5*time.Minute)}, // ends inside a slot
		{start.Add(6 * time.Hour), start.Add(12 * time.Hour)},
		{start.Add(50 * time.Minute), start.Add(13*time.Hour + 10*time.Minute)}, // starts inside a half hour
		{start.Add(70 * time.Minute), start.Add(5*time.Hour + 50*time.Minute)},  // and inside a six-hour slot
		{start.Add(6*time.Hour + 20*time.Minute), start.Add(6*time.Hour + 21*time.Minute)},
		{start.Add(-time.Hour), start.Add(6 * time.Hour)}, // ends at since
		{start.Add(30 * time.Minute), start.Add(90 * time.Minute)},
		{start.Add(5*time.Hour + 30*time.Minute), start.Add(8*time.Hour + 30*time.Minute)}, // around since
		{start.Add(-8 * 24 * time.Hour), start.Add(9 * 24 * time.Hour)},                    // weeks either side
	}
	for _, res := range []storage.Res{storage.HalfHour, storage.SixHours, storage.HalfPastHour, storage.Week} {
		for _, r := range ranges {
			st.since, st.halfPastSince, st.weekSince = time.Unix(0, 0), time.Unix(0, 0), time.Unix(0, 0)
			want := read(res, r[0], r[1])
			if r[1].Sub(r[0]) > time.Hour && (len(want.counts[0]) == 0 || len(want.users[0]) == 0) {
				t.Fatalf("%v [%v, %v): nothing stored", res, r[0], r[1])
			}
			for _, since := range []time.Time{start, start.Add(6 * time.Hour), start.Add(12 * time.Hour), start.Add(365 * 24 * time.Hour)} {
				st.since, st.halfPastSince, st.weekSince = since, since, since
				if got := read(res, r[0], r[1]); !reflect.DeepEqual(got, want) {
					t.Fatalf("%v [%v, %v) since %v:\n got %+v\nwant %+v", res, r[0], r[1], since, got, want)
				}
			}
		}
	}
	// And the sums are the quarters' and hours' own: every event counted.
	st.since = time.Unix(0, 0)
	var n int64
	for _, s := range read(storage.SixHours, start, start.Add(24*time.Hour)).counts[0] {
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
	if got, _ := readSince(ctx, st.s, resolutionsName); !got.Equal(time.Unix(0, 0)) {
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
	now := time.Now().UTC()
	if err := markResolutions(ctx, st.s, ks, now); err != nil {
		t.Fatal(err)
	}
	want := now.Add(24 * time.Hour).Truncate(6 * time.Hour).Add(6 * time.Hour) // now + 24 h, up to six hours
	if got, _ := readSince(ctx, st.s, resolutionsName); !got.Equal(want) {
		t.Fatalf("an upgraded keyspace: since %v, want %v", got, want)
	}
	if err := markResolutions(ctx, st.s, ks, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := readSince(ctx, st.s, resolutionsName); !got.Equal(want) {
		t.Fatalf("a second migration moved since to %v", got)
	}
	// An event counted far in the future (an internal publisher's clock):
	// since is after its day.
	if err := st.s.Query("DELETE FROM layout WHERE name = ?", resolutionsName).Exec(); err != nil {
		t.Fatal(err)
	}
	far := time.Now().UTC().AddDate(0, 2, 0)
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "m2", PartnerID: p, SubSystemID: tenant.NewID(), EventType: "v", Timestamp: far}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := markResolutions(ctx, st.s, ks, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, want := mustSince(t, st), far.Truncate(24*time.Hour).AddDate(0, 0, 1); !got.Equal(want) {
		t.Fatalf("since %v with an event counted at %v, want %v", got, far, want)
	}
}

func mustSince(t *testing.T, st *Store) time.Time {
	t.Helper()
	got, err := readSince(context.Background(), st.s, resolutionsName)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A keyspace migrated when half hours lay in daily partitions: version 13
// marks since again, and a half hour before it is summed from quarters
// rather than read from a partition no longer read (zero).
func TestMonthlyHalfHours(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if got := mustSince(t, st); !got.Equal(time.Unix(0, 0)) {
		t.Fatalf("a new keyspace: since %v", got)
	}
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Add(-2 * time.Hour)
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "h1", PartnerID: p, SubSystemID: sub, EventType: "v", Timestamp: at, UserID: "u"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// As the release before left it: half-hour rows under a day's period,
	// its layout row, version 13 not applied.
	var parts [][4]any
	iter := st.s.Query("SELECT DISTINCT kind, a, key, res, period FROM totals").Iter()
	var kind, a, res int8
	var key string
	var period int
	for iter.Scan(&kind, &a, &key, &res, &period) {
		if storage.Res(res) == storage.HalfHour {
			parts = append(parts, [4]any{kind, a, key, period})
		}
	}
	if err := iter.Close(); err != nil || len(parts) == 0 {
		t.Fatalf("%d half-hour partitions, %v", len(parts), err)
	}
	day := at.Year()*10000 + int(at.Month())*100 + at.Day()
	for _, pt := range parts {
		rows, err := st.s.Query("SELECT slot, n, groups, sketch, through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ?",
			pt[0], pt[1], pt[2], int8(storage.HalfHour), pt[3]).Iter().SliceMap()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := st.s.Query("INSERT INTO totals (kind, a, key, res, period, slot, n, groups, sketch, through) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
				pt[0], pt[1], pt[2], int8(storage.HalfHour), day, r["slot"], r["n"], r["groups"], r["sketch"], r["through"]).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.s.Query("DELETE FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ?", pt[0], pt[1], pt[2], int8(storage.HalfHour), pt[3]).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(qs ...string) {
		t.Helper()
		for _, q := range qs {
			if err := st.s.Query(q).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
	exec("INSERT INTO layout (name, since) VALUES ('resolutions-6', 0)", "DELETE FROM schema_migrations WHERE version = 13")
	count := func() int64 {
		t.Helper()
		cfg := st.cfg
		again, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		return countsTotal(t, again, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.HalfHour, From: at, To: at.Add(time.Minute)})
	}
	// Read as if its half hours were complete, the moved one is lost.
	if n := count(); n != 0 {
		t.Fatalf("the half hour reads %d: the setup did not move it", n)
	}
	// Without the new layout row (a store opened before the migration ran)
	// every half hour is summed: nothing is lost.
	exec("DELETE FROM layout WHERE name = 'resolutions-6m'")
	if n := count(); n != 1 {
		t.Fatalf("before the migration the half hour holds %d events, want 1", n)
	}
	if err := Migrate(ctx, st.cfg.Hosts, st.cfg.Keyspace, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		t.Fatal(err)
	}
	if got := mustSince(t, st); !got.After(time.Now().Add(24 * time.Hour)) {
		t.Fatalf("after the migration: since %v", got)
	}
	if n := count(); n != 1 {
		t.Fatalf("after the migration the half hour holds %d events, want 1", n)
	}
}

// A keyspace whose events no fold has applied yet (claims and manifests,
// no totals) is not new either: the users of each type are kept from a day
// and some after the upgrade, not from the start, since the manifests an
// older release wrote hold none.
func TestMarkLayoutSeesUnfoldedManifests(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	if err := st.s.Query("DELETE FROM layout WHERE name = ?", typedSpansName).Exec(); err != nil {
		t.Fatal(err)
	}
	p := tenant.NewID()
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "m1", PartnerID: p, SubSystemID: tenant.NewID(), EventType: "v", Timestamp: time.Now(), UserID: "u"}}); err != nil {
		t.Fatal(err)
	}
	var kind int8
	if err := st.s.Query("SELECT kind FROM totals LIMIT 1").Scan(&kind); err == nil {
		t.Fatal("a row in totals before any fold")
	}
	now := time.Now().UTC()
	if err := markLayout(ctx, st.s, st.cfg.Keyspace, now, typedSpansName); err != nil {
		t.Fatal(err)
	}
	want := now.Add(24 * time.Hour).Truncate(6 * time.Hour).Add(6 * time.Hour)
	if got, _ := readSince(ctx, st.s, typedSpansName); !got.Equal(want) {
		t.Fatalf("a keyspace with manifests only: typed users since %v, want %v", got, want)
	}
}
