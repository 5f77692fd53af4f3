package reporter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/tenant"
)

// TestTypedUsersFromTheirStart: on a keyspace that keeps the users of each
// type from a day on (an upgrade then), a report with eventType over a
// range from that day counts them exactly, on the range and every point;
// over a range from the day before, it leaves them out everywhere and its
// counts stay exact. Sub-system and partner reports, UTC and Asia/Kolkata.
func TestTypedUsersFromTheirStart(t *testing.T) {
	since := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	store := backendtest.CassandraTypedSince(t, "typedsince", since)
	ctx := context.Background()
	p := tenant.Partner{ID: tenant.NewID(), Code: "typed", Name: "Typed", Status: tenant.Active}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i := range 720 { // the day before since and the day from it
		ts := since.Add(-24*time.Hour + time.Duration(i)*4*time.Minute + 7*time.Second)
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: []string{"view", "buy"}[i%2],
			Timestamp: ts, UserID: fmt.Sprint("u", i%90)})
	}
	if _, err := store.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(store, zerolog.Nop())
	for _, zone := range []string{"UTC", "Asia/Kolkata"} {
		loc, _ := time.LoadLocation(zone)
		// The first day in the zone that starts at since or after (in
		// Kolkata a day starts 5:30 before UTC's), and the day before since's.
		first := time.Date(since.Year(), since.Month(), since.Day(), 0, 0, 0, 0, loc)
		if first.Before(since) {
			first = first.AddDate(0, 0, 1)
		}
		for _, c := range []struct {
			from      time.Time
			withUsers bool
		}{
			{first, true},
			{time.Date(since.Year(), since.Month(), since.Day()-1, 0, 0, 0, 0, loc), false},
		} {
			to := c.from.AddDate(0, 0, 1)
			what := fmt.Sprintf("%s from %s", zone, c.from.Format(time.RFC3339))
			var count int64
			all := &hll.Sketch{}
			byHour := map[time.Time]*hll.Sketch{}
			for i := range evs {
				if e := &evs[i]; e.EventType == "view" && !e.Timestamp.Before(c.from) && e.Timestamp.Before(to) {
					count++
					all.Add(storage.UserOf(e))
					l := e.Timestamp.In(loc) // its hour in the zone
					h := time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), 0, 0, 0, loc).UTC()
					if byHour[h] == nil {
						byHour[h] = &hll.Sketch{}
					}
					byHour[h].Add(storage.UserOf(e))
				}
			}
			if count == 0 {
				t.Fatalf("%s: no event in the range", what)
			}
			check := func(kind string, total int64, users *int64, series []report.Point) {
				t.Helper()
				if total != count || c.withUsers != (users != nil) || users != nil && uint64(*users) != all.Estimate() {
					t.Fatalf("%s %s: %d events, users %v; want %d events, users %v (%d)", kind, what, total, users, count, c.withUsers, all.Estimate())
				}
				for _, pt := range series {
					if c.withUsers != (pt.UniqueUsers != nil) {
						t.Fatalf("%s %s: point %s users %v", kind, what, pt.Timestamp, pt.UniqueUsers)
					}
					if pt.UniqueUsers == nil {
						continue
					}
					var want uint64
					if sk := byHour[pt.Timestamp.UTC()]; sk != nil {
						want = sk.Estimate()
					}
					if uint64(*pt.UniqueUsers) != want {
						t.Fatalf("%s %s: point %s has %d users, want %d", kind, what, pt.Timestamp, *pt.UniqueUsers, want)
					}
				}
			}
			sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: c.from, To: to, TZ: zone, EventType: "view"})
			if err != nil {
				t.Fatal(err)
			}
			check("sub-system", sr.TotalEvents, sr.UniqueUsers, sr.TimeSeries)
			pr, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: c.from, To: to, Granularity: "hour", TZ: zone, EventType: "view"})
			if err != nil {
				t.Fatal(err)
			}
			check("partner", pr.TotalEvents, pr.UniqueUsers, pr.TimeSeries)
		}
	}
}
