package reporter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/shared/tenant"
)

// A report's range users are read as one union of the slots that ended
// before today's UTC day (by the reporter's clock), which Cassandra keeps,
// and the rest as read. Wherever that clock cuts the range (a week's
// Monday, mid-week, the day ahead, behind the data, before it began), in
// UTC and in Asia/Kolkata (whose range ends on an hour from half past,
// 23:30 to 00:30 UTC, across the cut), by day and by hour, twice (the
// second from what was kept), the users equal the raw events'.
func TestRangeUsersWhereverTheClockCuts(t *testing.T) {
	for name, open := range backendtest.All(t, "rangecut") {
		t.Run(name, func(t *testing.T) { testRangeUsersCuts(t, open(t)) })
	}
}

func testRangeUsersCuts(t *testing.T, store storage.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	p := tenant.Partner{ID: tenant.NewID(), Code: "cut", Name: "Cut", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	start := now.Add(-19 * 24 * time.Hour)
	var evs []event.Event
	for i := 0; ; i++ {
		ts := start.Add(time.Duration(i) * 37 * time.Minute)
		if ts.After(now) {
			break
		}
		evs = append(evs, event.Event{ID: fmt.Sprint("c", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "t",
			UserID: fmt.Sprint("u", i%400, "-", ts.YearDay()%5), Timestamp: ts, ReceivedAt: now})
	}
	for k := 0; k < len(evs); k += 500 {
		if _, err := store.WriteEvents(ctx, evs[k:min(k+500, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	if cs, ok := store.(*cassandrastore.Store); ok {
		if err := cs.FoldPartner(ctx, p.ID, time.Now()); err != nil { // no manifest left to make a union dirty
			t.Fatal(err)
		}
	}
	monday := storage.Week.Slot(now)
	cuts := map[string]time.Time{
		"now":                 now,
		"this week's Monday":  monday,
		"last week, mid-week": monday.Add(-4*24*time.Hour + 5*time.Hour),
		"ten days back":       now.Add(-10 * 24 * time.Hour),
		"a day ahead":         now.Add(24 * time.Hour),
		"before the data":     start.Add(-3 * 24 * time.Hour),
	}
	r := New(store, zerolog.Nop())
	for cname, cut := range cuts {
		for _, zone := range []string{"UTC", "Asia/Kolkata"} {
			for _, g := range []string{"day", "hour"} {
				r.now = func() time.Time { return cut }
				for pass := range 2 {
					rep, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: start.Add(-26 * time.Hour), To: now.Add(time.Hour), Granularity: g, TZ: zone})
					if err != nil {
						t.Fatalf("%s %s %s: %v", cname, zone, g, err)
					}
					var want hll.Sketch
					for i := range evs {
						if e := &evs[i]; !e.Timestamp.Before(rep.From) && e.Timestamp.Before(rep.To) {
							want.Add(storage.UserOf(e))
						}
					}
					if rep.UniqueUsers == nil {
						t.Fatalf("clock at %s (%v), %s by %s, read %d: no uniqueUsers", cname, cut, zone, g, pass+1)
					}
					if got := uint64(*rep.UniqueUsers); got != want.Estimate() {
						t.Fatalf("clock at %s (%v), %s by %s, read %d: uniqueUsers %d, want %d", cname, cut, zone, g, pass+1, got, want.Estimate())
					}
				}
			}
		}
	}
}
