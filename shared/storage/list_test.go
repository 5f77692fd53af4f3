package storage

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
)

// pageOf lists a minute's stored events in order whatever the precision of
// the order they were stored in: here At truncated to the millisecond (as
// Cassandra keeps it) or to the second, events within one unit in any
// order of ids, with every page size, cursor and range bound.
func TestPageOfTruncatedOrder(t *testing.T) {
	base := time.Date(2026, 11, 28, 10, 20, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	var evs []event.Event
	for i := range 60 {
		off := time.Duration(rng.IntN(3000)) * time.Microsecond // three milliseconds, many events in each
		if i%5 == 4 {
			off = evs[rng.IntN(len(evs))].Timestamp.Sub(base) // the same instant as another
		}
		evs = append(evs, event.Event{ID: fmt.Sprintf("e%02d", rng.IntN(100)) + fmt.Sprint(i), EventType: []string{"a", "b"}[i%2], Timestamp: base.Add(off)})
	}
	want := func(q EventsQuery) []string {
		var sel []event.Event
		for _, e := range evs {
			if !e.Timestamp.Before(q.From) && e.Timestamp.Before(q.To) && (q.EventType == "" || e.EventType == q.EventType) &&
				(q.After == nil || comesAfter(&e, *q.After)) {
				sel = append(sel, e)
			}
		}
		sort.Slice(sel, func(i, j int) bool { return comesAfter(&sel[j], EventPos{sel[i].Timestamp, sel[i].ID}) })
		var ids []string
		for _, e := range sel {
			ids = append(ids, e.ID)
		}
		return ids
	}
	for _, unit := range []time.Duration{time.Millisecond, time.Second} {
		stored := func() []StoredEvent {
			var out []StoredEvent
			for _, i := range rng.Perm(len(evs)) {
				b, _ := json.Marshal(evs[i])
				out = append(out, StoredEvent{At: evs[i].Timestamp.Truncate(unit), ID: evs[i].ID, Body: b})
			}
			return out
		}
		for _, q := range []EventsQuery{
			{From: base, To: base.Add(time.Minute)},
			{From: base, To: base.Add(time.Minute), EventType: "b"},
			{From: base.Add(500 * time.Microsecond), To: base.Add(2500 * time.Microsecond)},
		} {
			all := want(q)
			for limit := 1; limit <= 13; limit++ {
				q := q
				q.Limit, q.After = limit, nil
				var got []string
				for range 100 {
					var page []event.Event
					if err := pageOf(stored(), q, &page); err != nil {
						t.Fatal(err)
					}
					for _, e := range page {
						got = append(got, e.ID)
					}
					if len(page) < limit {
						break
					}
					last := page[len(page)-1]
					q.After = &EventPos{last.Timestamp, last.ID}
				}
				if !slices.Equal(got, all) {
					t.Fatalf("At to the %v, %+v limit %d:\n got %v\nwant %v", unit, q, limit, got, all)
				}
			}
		}
	}
}
