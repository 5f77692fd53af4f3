package backendtest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// TestUserEstimates: a slot's estimate (UserEstimates) is the Estimate of
// the sketch Users gives for it, and a slot's total (Counts) the events
// stored in it, for every slot, resolution, scope and span selection,
// while the counts are only in manifests, once folded (Cassandra then
// reads each row's estimate, not its sketch, and a day's hours from their
// pack), and with new events over folded rows (those slots read whole
// again), on both backends and an upgraded keyspace (summed slots, hours
// before their packs).
func TestUserEstimates(t *testing.T) {
	testenv.Heavy(t)
	stores := backendtest.All(t, "estimates")
	if _, ok := stores["cassandra"]; ok {
		stores["cassandra, upgraded keyspace"] = func(t *testing.T) storage.Store { return backendtest.CassandraUpgraded(t, "estimates") }
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { testUserEstimates(t, open(t)) })
	}
}

type folder interface {
	FoldPending(ctx context.Context, cutoff time.Time) error
}

func testUserEstimates(t *testing.T, store storage.Store) {
	ctx := context.Background()
	p := tenant.Partner{ID: tenant.NewID(), Code: "est", Name: "Est", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	sub := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active}
	if err := store.CreateSubSystem(ctx, sub); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -3) // across a month's start
	end := start.AddDate(0, 0, 6)
	rng := rand.New(rand.NewPCG(3, 5))
	n := 0
	var stored []event.Event
	write := func(count, users int) {
		t.Helper()
		var evs []event.Event
		for range count {
			ts := start.Add(time.Duration(rng.Int64N(int64(end.Sub(start)))))
			e := event.Event{ID: fmt.Sprint("e-", n), PartnerID: p.ID, SubSystemID: sub.ID, EventType: "view", Timestamp: ts, ReceivedAt: ts}
			if u := rng.IntN(users); u%3 == 0 {
				e.AnonymousID = fmt.Sprint("a-", u)
			} else {
				e.UserID = fmt.Sprint("u-", u)
			}
			n++
			evs = append(evs, e)
		}
		stored = append(stored, evs...)
		for i := 0; i < len(evs); i += 500 {
			if _, err := store.WriteEvents(ctx, evs[i:min(i+500, len(evs))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(stage string) {
		t.Helper()
		compared := 0
		for _, res := range storage.Resolutions {
			d := res.Duration()
			for _, scope := range storage.UserScopes {
				if !storage.KeepsUsers(store, scope, start) {
					continue
				}
				key := map[storage.UserScope]string{storage.SubSystemUsers: sub.ID, storage.PartnerUsers: p.ID,
					storage.SubSystemTypeUsers: storage.TypedKey(sub.ID, "view"), storage.PartnerTypeUsers: storage.TypedKey(p.ID, "view")}[scope]
				// The whole range, then every third slot of it named.
				var only storage.Spans
				for s := res.Slot(start); s.Before(end) && len(only) < 200; s = s.Add(3 * d) {
					only = append(only, storage.Span{From: s, To: s.Add(d)})
				}
				for _, o := range []storage.Spans{nil, only} {
					q := storage.UsersQuery{Scope: scope, Key: key, Res: res, From: start, To: end, Only: o}
					var want, got []string
					err := storage.EstimateUsers(ctx, store.Users, q, func(t time.Time, n uint64) error {
						want = append(want, fmt.Sprint(t.Format(time.RFC3339), "=", n))
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					err = store.UserEstimates(ctx, q, func(t time.Time, n uint64) error {
						got = append(got, fmt.Sprint(t.Format(time.RFC3339), "=", n))
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("%s, %v, scope %d, only %v:\n got %v\nwant %v", stage, res, scope, o != nil, got, want)
					}
					if len(want) == 0 {
						t.Fatalf("%s, %v, scope %d, only %v: no slot has users", stage, res, scope, o != nil)
					}
					compared += len(want)
				}
			}
			for _, rollup := range []storage.Rollup{storage.SubSystemTypes, storage.PartnerTypes} {
				key := sub.ID
				if rollup == storage.PartnerTypes {
					key = p.ID
				}
				raw := map[time.Time]int64{}
				for _, e := range stored {
					raw[res.Slot(e.Timestamp)]++
				}
				slots, err := store.Counts(ctx, storage.CountsQuery{Rollup: rollup, Key: key, Res: res, From: start, To: end})
				if err != nil {
					t.Fatal(err)
				}
				got := map[time.Time]int64{}
				for _, sl := range slots {
					got[sl.Start] = sl.Total
				}
				if fmt.Sprint(got) != fmt.Sprint(raw) {
					t.Fatalf("%s, %v, rollup %d: counts\n got %v\nwant %v", stage, res, rollup, got, raw)
				}
				compared += len(raw)
			}
		}
		t.Logf("%s: %d slot estimates compared", stage, compared)
	}
	write(4000, 3000)
	check("in manifests")
	f, folds := store.(folder)
	if folds {
		if err := f.FoldPending(ctx, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		check("folded")
	}
	write(300, 6000) // new users over folded rows
	check("new events over folded rows")
	if folds {
		if err := f.FoldPending(ctx, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		check("folded again")
	}
}
