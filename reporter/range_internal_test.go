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
	"github.com/volcanion/tracking/shared/report/calendar"
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
	p, ss := partnerWithSub(t, store, "cut")
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

// A 30-day UTC report by day is 30 slots, one a point, and a whole tiling
// of about a dozen (weeks and days). On a store that keeps unions
// (Cassandra) its points' users are the days' estimates and the range's
// the kept union of the 30 days, not 30 day sketches read and merged; on
// one that does not (Pebble), the sketches as before. Either way every
// figure equals the raw events', read twice (the second from what was
// kept), with late events over the folded rows and a duplicate.
func TestUTCDaysAsEstimatesAndAUnion(t *testing.T) {
	for name, open := range backendtest.All(t, "utcdays") {
		t.Run(name, func(t *testing.T) { testUTCDays(t, open(t), name == "cassandra") })
	}
}

func testUTCDays(t *testing.T, store storage.Store, keepsUnions bool) {
	ctx := context.Background()
	now := time.Now().UTC()
	p, ss := partnerWithSub(t, store, "days")
	from := storage.Day.Slot(now).AddDate(0, 0, -31)
	to := from.AddDate(0, 0, 30)
	var evs, late []event.Event
	for i := 0; ; i++ {
		ts := from.Add(time.Duration(i) * 41 * time.Minute)
		if !ts.Before(to) {
			break
		}
		e := event.Event{ID: fmt.Sprint("d", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "t",
			UserID: fmt.Sprint("u", i%300, "-", ts.YearDay()%4), Timestamp: ts, ReceivedAt: now}
		if i%9 == 4 {
			e.UserID = fmt.Sprint("late-", i%50) // users no on-time event has
			late = append(late, e)
			continue
		}
		evs = append(evs, e)
	}
	for k := 0; k < len(evs); k += 500 {
		if _, err := store.WriteEvents(ctx, evs[k:min(k+500, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	if cs, ok := store.(*cassandrastore.Store); ok {
		if err := cs.FoldPartner(ctx, p.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	pl, err := makePlan(from, to, "day", "UTC", calendar.Day, 400*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.list(); err != nil {
		t.Fatal(err)
	}
	pl.reads = store
	whole := pl.wholeTiling()
	if n := whole.slots(); n*4 <= len(pl.buckets) || n >= len(pl.buckets) {
		t.Fatalf("the range's tiling is %d slots for %d points: not the case this test is for", n, len(pl.buckets))
	}
	series := pl.seriesTiling()
	rng, ok := pl.estimatesFrom(ctx, series, whole, len(pl.buckets))
	if !pl.oneSlotEach(series) || ok != keepsUnions || ok && rng != series {
		t.Fatalf("estimates and the days' union read: %v (of the series: %v), want %v (where the store keeps unions)", ok, rng == series, keepsUnions)
	}
	r := New(store, zerolog.Nop())
	check := func(what string, evs []event.Event) {
		t.Helper()
		for pass := range 2 {
			rep, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to, Granularity: "day"})
			if err != nil {
				t.Fatal(err)
			}
			days := map[time.Time]*hll.Sketch{}
			counts := map[time.Time]int64{}
			var all hll.Sketch
			for i := range evs {
				d := storage.Day.Slot(evs[i].Timestamp)
				if days[d] == nil {
					days[d] = &hll.Sketch{}
				}
				days[d].Add(storage.UserOf(&evs[i]))
				counts[d]++
				all.Add(storage.UserOf(&evs[i]))
			}
			if len(rep.TimeSeries) != 30 {
				t.Fatalf("%s, read %d: %d points", what, pass+1, len(rep.TimeSeries))
			}
			for _, pt := range rep.TimeSeries {
				d := pt.Timestamp.UTC()
				var want uint64
				if days[d] != nil {
					want = days[d].Estimate()
				}
				if pt.Count != counts[d] || pt.UniqueUsers == nil || uint64(*pt.UniqueUsers) != want {
					t.Fatalf("%s, read %d: %s has %d events and %v users, want %d and %d", what, pass+1, d.Format(time.DateOnly), pt.Count, pt.UniqueUsers, counts[d], want)
				}
			}
			if rep.UniqueUsers == nil || uint64(*rep.UniqueUsers) != all.Estimate() || rep.TotalEvents != int64(len(evs)) {
				t.Fatalf("%s, read %d: %d events and %v users, want %d and %d", what, pass+1, rep.TotalEvents, rep.UniqueUsers, len(evs), all.Estimate())
			}
		}
	}
	check("folded", evs)
	// Late events, over the rows folded and a union kept of them (and one
	// of them again): in manifests above the floor, then folded.
	all := append(append([]event.Event(nil), evs...), late...)
	for _, batch := range [][]event.Event{late, late[:1]} {
		if _, err := store.WriteEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	check("late, not folded", all)
	if cs, ok := store.(*cassandrastore.Store); ok {
		if err := cs.FoldPartner(ctx, p.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	check("late, folded", all)
}

// partnerWithSub stores an active partner of code and one sub-system of it.
func partnerWithSub(t *testing.T, store storage.Store, code string) (tenant.Partner, tenant.SubSystem) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	p := tenant.Partner{ID: tenant.NewID(), Code: code, Name: code, Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	return p, ss
}
