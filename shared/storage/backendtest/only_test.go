package backendtest_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// TestOnlySpans: a read naming spans (Only) gives exactly the slots of
// the range read whole that start in them, at every resolution, for counts
// (with and without groups, one group) and sketches, on both backends and
// a Cassandra keyspace upgraded from before half hours (those slots summed
// from finer ones); the totals equal counts from the raw events. Spans are
// random, over 40 days across a month's start: on Cassandra most name a
// few slots of a partition (read by name, slot IN), some most of it (read
// as a range and filtered); some start and end mid-slot, so spans apart
// share a slot (given once), and the range clips the first and last.
func TestOnlySpans(t *testing.T) {
	testenv.Heavy(t)
	stores := backendtest.All(t, "only")
	if _, ok := stores["cassandra"]; ok {
		stores["cassandra, upgraded keyspace"] = func(t *testing.T) storage.Store { return backendtest.CassandraUpgraded(t, "only") }
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { testOnlySpans(t, open(t)) })
	}
}

func testOnlySpans(t *testing.T, store storage.Store) {
	ctx := context.Background()
	p := tenant.Partner{ID: tenant.NewID(), Code: "only", Name: "Only", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	sub := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active}
	if err := store.CreateSubSystem(ctx, sub); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, -20) // 40 days across a month's start
	end := start.AddDate(0, 0, 40)
	rng := rand.New(rand.NewPCG(7, 11))
	types := []string{"view", "click", "buy"}
	var evs []event.Event
	for n := range 3000 {
		ts := start.Add(time.Duration(rng.Int64N(int64(end.Sub(start)))))
		e := event.Event{ID: fmt.Sprint("o-", n), PartnerID: p.ID, SubSystemID: sub.ID, EventType: types[rng.IntN(3)],
			Timestamp: ts, ReceivedAt: ts, UserID: fmt.Sprint("u-", rng.IntN(400))}
		evs = append(evs, e)
	}
	for i := 0; i < len(evs); i += 200 {
		if _, err := store.WriteEvents(ctx, evs[i:min(i+200, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	for _, res := range storage.Resolutions {
		d := res.Duration()
		raw := map[time.Time]int64{}
		for _, e := range evs {
			raw[res.Slot(e.Timestamp)]++
		}
		var counted, sketched int64 // over the rounds: something was compared
		for round := range 12 {
			// Spans in order, apart: a few slots each, gaps of random length.
			var only storage.Spans
			t0 := res.Slot(start.Add(time.Duration(rng.Int64N(int64(10 * 24 * time.Hour)))))
			long := round%4 == 3      // most slots of each partition
			unaligned := round%4 == 2 // spans and bounds mid-slot: spans apart may share a slot
			for t0.Before(end) && len(only) < 80 {
				n, gap := 1+rng.IntN(3), 1+rng.IntN(60)
				if long {
					n, gap = 10+rng.IntN(30), 1
				}
				sp := storage.Span{From: t0, To: t0.Add(time.Duration(n) * d)}
				if unaligned {
					sp.To = t0.Add(time.Minute * time.Duration(1+rng.Int64N(int64(n)*int64(d/time.Minute))))
					only = append(only, sp)
					t0 = sp.To.Add(time.Minute * time.Duration(1+rng.IntN(int(d/time.Minute)*3)))
					continue
				}
				only = append(only, sp)
				t0 = sp.To.Add(time.Duration(gap) * d)
			}
			from, to := only[0].From, only[len(only)-1].To
			if unaligned && len(only) > 2 {
				from, to = only[0].To.Add(-time.Minute), only[len(only)-1].From.Add(time.Minute) // clipped
			}
			for _, cq := range []storage.CountsQuery{
				{Rollup: storage.SubSystemTypes, Key: sub.ID, Groups: true},
				{Rollup: storage.PartnerTypes, Key: p.ID},
				{Rollup: storage.PartnerTypes, Key: p.ID, Group: "buy"},
			} {
				cq.Res, cq.From, cq.To = res, from, to
				whole, err := store.Counts(ctx, cq)
				if err != nil {
					t.Fatal(err)
				}
				cq.Only = only
				got, err := store.Counts(ctx, cq)
				if err != nil {
					t.Fatal(err)
				}
				var want []storage.Slot
				for _, s := range whole {
					if only.Has(res, s.Start) {
						want = append(want, s)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%v round %d %+v: with Only\n%v\nwant\n%v", res, round, cq, got, want)
				}
				if cq.Group == "" && !cq.Groups {
					var n, m int64
					for _, s := range got {
						n += s.Total
					}
					for slot, c := range raw {
						if only.Has(res, slot) && !slot.Before(res.Slot(from)) && slot.Before(to) {
							m += c
						}
					}
					counted += n
					if n != m {
						t.Fatalf("%v round %d: %d events counted in the spans, %d stored", res, round, n, m)
					}
				}
			}
			uq := storage.UsersQuery{Scope: storage.SubSystemUsers, Key: sub.ID, Res: res, From: from, To: to}
			whole, err := storage.UserSlots(ctx, store, uq)
			if err != nil {
				t.Fatal(err)
			}
			uq.Only = only
			got, err := storage.UserSlots(ctx, store, uq)
			if err != nil {
				t.Fatal(err)
			}
			var want []storage.SlotUsers
			for _, s := range whole {
				if only.Has(res, s.Start) {
					want = append(want, s)
				}
			}
			sketched += int64(len(got))
			if len(got) != len(want) {
				t.Fatalf("%v round %d: %d sketches with Only, want %d", res, round, len(got), len(want))
			}
			for i := range got {
				if !got[i].Start.Equal(want[i].Start) || !bytes.Equal(got[i].Sketch, want[i].Sketch) {
					var a, b hll.Sketch
					a.MergeBinary(got[i].Sketch)
					b.MergeBinary(want[i].Sketch)
					t.Fatalf("%v round %d: sketch %d at %v (%d users), want %v (%d)", res, round, i, got[i].Start, a.Estimate(), want[i].Start, b.Estimate())
				}
			}
		}
		if counted == 0 || sketched == 0 {
			t.Fatalf("%v: no event in any span (%d counted, %d sketches)", res, counted, sketched)
		}
	}
}
