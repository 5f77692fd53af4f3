package cassandrastore

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// A report reads sketch rows without through, so it merges again every
// manifest above its floor, the ones a row already holds included: the
// sketches (and the counts, which do read through) are the same from a
// floor of nothing as from the real one.
func TestUsersFromAFloorBelowTheRows(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	evs := make([]event.Event, 300)
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprint("f-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			UserID: fmt.Sprint("u", i), Timestamp: at.Add(time.Duration(i) * 10 * time.Second)}
	}
	if _, err := st.WriteEvents(ctx, evs[:200]); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil { // the rows hold the first 200
		t.Fatal(err)
	}
	if _, err := st.WriteEvents(ctx, evs[200:]); err != nil { // the rest only in manifests
		t.Fatal(err)
	}
	type figures struct {
		counts   []storage.Slot
		sketches map[time.Time][]byte
	}
	read := func() figures {
		t.Helper()
		var f figures
		var err error
		f.counts, err = st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Minute, From: at, To: at.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		f.sketches = map[time.Time][]byte{}
		for _, sc := range []struct {
			scope storage.UserScope
			key   string
		}{{storage.SubSystemUsers, sub}, {storage.PartnerUsers, p}} {
			err := st.Users(ctx, storage.UsersQuery{Scope: sc.scope, Key: sc.key, Res: storage.Minute, From: at, To: at.Add(time.Hour)}, func(start time.Time, b []byte) error {
				var s hll.Sketch // compared by what they hold, not how encoded
				if err := s.MergeBinary(b); err != nil {
					return err
				}
				f.sketches[start.Add(time.Duration(sc.scope))] = s.Append(nil)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	want := read()
	var n int64
	for _, sl := range want.counts {
		n += sl.Total
	}
	// Every event's user is in its minute's sketch: the union holds what a
	// sketch of all 300 events' users holds.
	var all, every hll.Sketch
	for at, b := range want.sketches {
		if at.Equal(at.Truncate(time.Minute)) { // the sub-system's
			all.MergeBinary(b)
		}
	}
	for i := range evs {
		every.Add(storage.UserOf(&evs[i]))
	}
	if n != 300 || !bytes.Equal(all.Append(nil), every.Append(nil)) {
		t.Fatalf("from the real floor: %d events, %d users; want 300 and %d", n, all.Estimate(), every.Estimate())
	}
	// A floor of nothing: every manifest is above it, the folded ones too.
	st.applied.Store(p, &floorRead{at: time.Now()})
	st.forgetRecent(p)
	got := read()
	if fmt.Sprint(got.counts) != fmt.Sprint(want.counts) {
		t.Fatalf("counts from a floor of nothing:\n%v\nwant\n%v", got.counts, want.counts)
	}
	if len(got.sketches) != len(want.sketches) {
		t.Fatalf("%d sketches from a floor of nothing, want %d", len(got.sketches), len(want.sketches))
	}
	for at, w := range want.sketches {
		if !bytes.Equal(got.sketches[at], w) {
			t.Fatalf("the sketch of %v differs from a floor of nothing", at)
		}
	}
}
