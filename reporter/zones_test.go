package reporter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/tenant"
)

// TestReportsInZones: events placed around the day boundaries of zones
// offset by 30 and 45 minutes and around Berlin's DST changes; every
// figure of every granularity and zone equals a count made from the raw
// events with the zone's own calendar, on both backends.
func TestReportsInZones(t *testing.T) {
	for name, open := range backendtest.All(t, "reporter") {
		t.Run(name, func(t *testing.T) { testReportsInZones(t, open(t)) })
	}
}

func testReportsInZones(t *testing.T, store storage.Store) {
	ctx := context.Background()
	p := tenant.Partner{ID: tenant.NewID(), Code: "zones", Name: "Zones", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	var subs []tenant.SubSystem
	for i := range 2 {
		ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: fmt.Sprint("z", i), Name: fmt.Sprint("Z", i), Status: tenant.Active}
		if err := store.CreateSubSystem(ctx, ss); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, ss)
	}
	// Instants a minute either side of the boundaries that matter, and
	// some inside Berlin's doubled hour.
	var at []time.Time
	for _, base := range []string{
		"2026-03-10T18:30:00Z", // midnight in Kolkata
		"2026-03-10T18:15:00Z", // midnight in Kathmandu
		"2026-03-29T01:00:00Z", // Berlin springs forward (02:00 → 03:00)
		"2026-03-29T22:00:00Z", // midnight in Berlin after it
		"2026-03-31T22:00:00Z", // a month starts in Berlin
		"2026-03-30T00:00:00Z", // a Monday in UTC
		"2026-10-25T00:30:00Z", // Berlin's doubled hour, first time (02:30 +02)
		"2026-10-25T01:30:00Z", // and second (02:30 +01)
		"2026-10-24T22:00:00Z", // midnight in Berlin
	} {
		b, _ := time.Parse(time.RFC3339, base)
		at = append(at, b.Add(-time.Minute), b, b.Add(time.Minute))
	}
	var evs []event.Event
	for i, ts := range at {
		for k := range 1 + i%3 {
			ss := subs[(i+k)%2]
			evs = append(evs, event.Event{ID: fmt.Sprint("z-", i, "-", k), PartnerID: p.ID, SubSystemID: ss.ID,
				EventType: []string{"view", "click"}[k%2], Timestamp: ts})
		}
	}
	if _, err := store.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(store, zerolog.Nop())

	// A key for the bucket holding an instant, from the zone's own calendar.
	keys := map[string]func(time.Time) string{
		"hour":  func(t time.Time) string { return t.Format("2006-01-02T15 -0700") },
		"day":   func(t time.Time) string { return t.Format(time.DateOnly) },
		"week":  func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, "-W", w) },
		"month": func(t time.Time) string { return t.Format("2006-01") },
	}
	from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, zone := range []string{"UTC", "Asia/Kolkata", "Asia/Kathmandu", "Europe/Berlin"} {
		loc, _ := time.LoadLocation(zone)
		for g, key := range keys {
			f, tt := from, to
			if g == "hour" { // at most 1,500 points: the weeks around the events
				f, tt = time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
			}
			for _, ss := range subs {
				want := map[string]int64{}
				var total int64
				for _, e := range evs {
					if e.SubSystemID == ss.ID && !e.Timestamp.Before(f) && e.Timestamp.Before(tt) {
						want[key(e.Timestamp.In(loc))]++
						total++
					}
				}
				rep, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: f, To: tt, Granularity: g, TZ: zone})
				if err != nil {
					t.Fatalf("%s %s: %v", zone, g, err)
				}
				got := map[string]int64{}
				for i, pt := range rep.TimeSeries {
					if _, off := pt.Timestamp.Zone(); pt.Timestamp.Location().String() != zone && off != 0 {
						t.Fatalf("%s %s: point %d stamped in %s", zone, g, i, pt.Timestamp.Location())
					}
					if i > 0 && !pt.Timestamp.After(rep.TimeSeries[i-1].Timestamp) {
						t.Fatalf("%s %s: points out of order at %d", zone, g, i)
					}
					if pt.Count > 0 {
						got[key(pt.Timestamp.In(loc))] += pt.Count
					}
				}
				if rep.TotalEvents != total || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s %s %s: total %d, want %d\n got %v\nwant %v", zone, g, ss.Code, rep.TotalEvents, total, got, want)
				}
			}
			// The partner report of one sub-system equals its own report.
			pr, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: f, To: tt, Granularity: g, TZ: zone, SubSystemID: subs[1].ID, Top: 1})
			if err != nil {
				t.Fatalf("partner %s %s: %v", zone, g, err)
			}
			sr, _ := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[1].ID, From: f, To: tt, Granularity: g, TZ: zone})
			if pr.TotalEvents != sr.TotalEvents || len(pr.TimeSeries) != len(sr.TimeSeries) || len(pr.TopSubSystems) != 1 {
				t.Fatalf("partner %s %s: %d events in %d points, sub-system %d in %d", zone, g, pr.TotalEvents, len(pr.TimeSeries), sr.TotalEvents, len(sr.TimeSeries))
			}
			for i := range pr.TimeSeries {
				if a, b := pr.TimeSeries[i], sr.TimeSeries[i]; !a.Timestamp.Equal(b.Timestamp) || a.Count != b.Count {
					t.Fatalf("partner %s %s: point %d %+v, sub-system %+v", zone, g, i, pr.TimeSeries[i], sr.TimeSeries[i])
				}
			}
		}
	}

	// Berlin's spring day has 23 hourly points, its autumn day 25.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for day, want := range map[string]int{"2026-03-29": 23, "2026-10-25": 25} {
		d, _ := time.ParseInLocation(time.DateOnly, day, berlin)
		rep, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[0].ID, From: d, To: d.AddDate(0, 0, 1), TZ: "Europe/Berlin"})
		if err != nil || len(rep.TimeSeries) != want {
			t.Fatalf("%s in Berlin: %d hourly points, want %d (%v)", day, len(rep.TimeSeries), want, err)
		}
	}

	// Bad parameters name themselves.
	for _, c := range []struct {
		q     report.SubSystemQuery
		field string
	}{
		{report.SubSystemQuery{Granularity: "fortnight"}, "granularity"},
		{report.SubSystemQuery{Granularity: "minute"}, "granularity"},
		{report.SubSystemQuery{TZ: "Mars/Olympus"}, "tz"},
		{report.SubSystemQuery{Granularity: "hour", From: from, To: to}, "granularity"}, // 5,856 hours
	} {
		q := c.q
		q.SubSystemID = subs[0].ID
		if q.From.IsZero() {
			q.From, q.To = from, from.AddDate(0, 0, 7)
		}
		_, err := r.SubSystemReport(ctx, q)
		if ae := apierr.From(err); ae.Code != apierr.InvalidParameter || len(ae.Fields) != 1 || ae.Fields[0].Field != c.field {
			t.Errorf("%+v: %v, want invalid_parameter naming %s", c.q, err, c.field)
		}
	}
	for _, top := range []int{-1, 101} {
		_, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to, Top: top})
		if ae := apierr.From(err); ae.Code != apierr.InvalidParameter || len(ae.Fields) != 1 || ae.Fields[0].Field != "top" {
			t.Errorf("top %d: %v", top, err)
		}
	}
}
