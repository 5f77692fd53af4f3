package reporter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// Two days of 6,000 types each, 1,000 of them on both: each day's slots
// name all theirs, but the range names more than an answer holds. The
// answer names the storage.MaxGroups largest (ties by name) and counts the
// rest under storage.OtherGroup; every total stays exact.
func TestEventsByTypeBounded(t *testing.T) {
	ctx := context.Background()
	store := testenv.Pebble(t)
	p := tenant.Partner{ID: tenant.NewID(), Code: "p", Name: "P", Status: tenant.Active}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for day, types := range [][2]int{{0, 6000}, {5000, 11000}} {
		for i := types[0]; i < types[1]; i++ {
			evs = append(evs, event.Event{ID: fmt.Sprint(day, "-", i), PartnerID: p.ID, SubSystemID: ss.ID,
				EventType: fmt.Sprintf("t%05d", i), Timestamp: t0.AddDate(0, 0, day).Add(time.Duration(i) * time.Second)})
		}
	}
	if _, err := store.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(store, zerolog.Nop())
	pr, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: t0, To: t0.AddDate(0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: t0, To: t0.AddDate(0, 0, 2), Granularity: "day"})
	if err != nil {
		t.Fatal(err)
	}
	for name, rep := range map[string]struct {
		total  int64
		byType map[string]int64
	}{"partner": {pr.TotalEvents, pr.EventsByType}, "sub-system": {sr.TotalEvents, sr.EventsByType}} {
		var sum int64
		for _, n := range rep.byType {
			sum += n
		}
		// 11,000 types: the 1,000 with 2 events and the first 9,000 with
		// one are named, the last 1,000 by name are other.
		if rep.total != 12000 || sum != rep.total || len(rep.byType) != storage.MaxGroups+1 ||
			rep.byType[storage.OtherGroup] != 1000 || rep.byType["t05500"] != 2 || rep.byType["t10999"] != 0 || rep.byType["t09999"] != 1 {
			t.Fatalf("%s: total %d, sum %d, %d types, other %d", name, rep.total, sum, len(rep.byType), rep.byType[storage.OtherGroup])
		}
	}
	if pr.TopEventTypes[0].EventType != "t05000" || pr.TopEventTypes[0].EventCount != 2 {
		t.Fatalf("top: %+v", pr.TopEventTypes[0])
	}
}

// A type's total over the range is what its series shows, also where a
// slot counts more than storage.MaxGroups types: a Kolkata day's total
// reads the slots its point reads, not the range's ends read finer
// (whose half hours named the many types first and count the type's later
// events under storage.OtherGroup).
func TestOneTypeTotalIsItsSeriesPastTheCap(t *testing.T) {
	ctx := context.Background()
	store := testenv.Pebble(t)
	p := tenant.Partner{ID: tenant.NewID(), Code: "p", Name: "P", Status: tenant.Active}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 2, 27, 0, 0, 0, 0, time.UTC)
	ev := func(id, typ string, at time.Time) event.Event {
		return event.Event{ID: id, PartnerID: p.ID, SubSystemID: ss.ID, EventType: typ, Timestamp: at}
	}
	// Three writes, in this order: a view names it in the six hours from
	// midnight; then 10,000 types fill the half hour and hour at 01:00;
	// then 5 views there count as themselves in the six hours, as
	// storage.OtherGroup in those.
	var many []event.Event
	for i := range storage.MaxGroups {
		many = append(many, ev(fmt.Sprint("a", i), fmt.Sprintf("a%05d", i), day.Add(time.Hour+time.Duration(i)*100*time.Millisecond)))
	}
	var late []event.Event
	for i := range 5 {
		late = append(late, ev(fmt.Sprint("v", i+1), "view", day.Add(time.Hour+20*time.Minute)))
	}
	for _, b := range [][]event.Event{{ev("v0", "view", day.Add(10*time.Minute))}, many, late} {
		if _, err := store.WriteEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 2, 27, 0, 0, 0, 0, kolkata)
	r, err := reporter.New(store, zerolog.Nop()).SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: from.AddDate(0, 0, 1),
		Granularity: "day", TZ: "Asia/Kolkata", EventType: "view"})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, pt := range r.TimeSeries {
		sum += pt.Count
	}
	if r.TotalEvents != sum || r.TotalEvents != 6 || r.EventsByType["view"] != 6 {
		t.Fatalf("total %d, by type %v, series %d; 6 views", r.TotalEvents, r.EventsByType, sum)
	}
}
