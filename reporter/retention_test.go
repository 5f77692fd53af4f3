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
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/shared/tenant"
)

// At the retention edge, on Cassandra's own TTLs: events as old as the
// retention (an hour, or 80 minutes) are gone from their minute rows while the hour,
// day and week rows that count them live on (a row lives until its slot's
// end plus the retention). A minute series then shows none of them, and
// its total, by type, users and top lists must show none either (also of
// one type); an hourly one shows them in their hour, and so must the rest. (Reading the range's coarse
// slots across the horizon, the total counted what the series did not.)
func TestTotalsAgreeWithTheSeriesAtTheRetentionEdge(t *testing.T) {
	t.Parallel()
	// The early events' hour row must outlive the reports by far. It
	// expires at its hour's end plus the retention, their minute row at the
	// minute's end plus the retention, a minute or so from now: with the
	// early events in the last minutes of their hour, both go at once (a
	// run begun at 23:59 read the hour row before the reports, which came
	// after it had expired). So the retention puts them about 20 minutes or more
	// before their hour's end.
	now := time.Now().UTC()
	ret := time.Hour
	if now.Minute() >= 40 {
		ret += 20 * time.Minute
	}
	store := backendtest.CassandraWith(t, "retention", func(c *cassandrastore.Config) { c.Retention = ret })
	ctx := context.Background()
	p := tenant.Partner{ID: tenant.NewID(), Code: "ret", Name: "Ret", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	early := now.Add(-ret + 20*time.Second) // kept 20 s more; its minute row about a minute
	var evs []event.Event
	for i := range 6 {
		at := early
		if i >= 3 {
			at = now.Add(-10 * time.Minute) // kept
		}
		evs = append(evs, event.Event{ID: fmt.Sprint("r", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", UserID: fmt.Sprint("u", i), Timestamp: at, ReceivedAt: now})
	}
	if _, err := store.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := store.(*cassandrastore.Store).FoldPartner(ctx, p.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Until the early minute's row has expired (a minute or so).
	deadline := time.Now().Add(3 * time.Minute)
	for {
		sl, err := store.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: ss.ID, Res: storage.Minute, From: early, To: early.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if len(sl) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the minute row of %v has not expired: %+v", early, sl)
		}
		time.Sleep(time.Second) // polling Cassandra's clock; nothing to wait on
	}
	hours, err := store.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: ss.ID, Res: storage.Hour, From: early, To: early.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(hours) == 0 || hours[0].Total < 3 {
		t.Skipf("the early events' hour row expired too (%v): the edge moved past them", hours)
	}
	svc := reporter.New(store, zerolog.Nop())
	from, to := now.Add(-2*time.Hour), now.Add(time.Minute)
	for _, g := range []string{"minute", "hour"} {
		sr, err := svc.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: to, Granularity: g})
		if err != nil {
			t.Fatal(err)
		}
		pr, err := svc.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to, Granularity: g})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			name   string
			total  int64
			byType map[string]int64
			series []report.Point
		}{{"sub-system", sr.TotalEvents, sr.EventsByType, sr.TimeSeries}, {"partner", pr.TotalEvents, pr.EventsByType, pr.TimeSeries}} {
			var sum int64
			for _, pt := range r.series {
				sum += pt.Count
			}
			if r.total != sum || r.byType["view"] != sum {
				t.Errorf("%s report by %s: total %d, by type %v, but its series sums to %d", r.name, g, r.total, r.byType, sum)
			}
			if g == "minute" && sum != 3 || g == "hour" && sum != 6 {
				t.Errorf("%s report by %s: the series sums to %d", r.name, g, sum)
			}
		}
		// And the range's users and top lists: those of the same events.
		want := int64(3)
		if g == "hour" {
			want = 6
		}
		for name, u := range map[string]*int64{"sub-system": sr.UniqueUsers, "partner": pr.UniqueUsers} {
			if u == nil {
				t.Errorf("%s report by %s: no unique users, want %d", name, g, want)
			} else if *u != want {
				t.Errorf("%s report by %s: %d unique users, want %d", name, g, *u, want)
			}
		}
		if len(pr.TopEventTypes) != 1 || pr.TopEventTypes[0].EventCount != want || len(pr.TopSubSystems) != 1 || pr.TopSubSystems[0].EventCount != want {
			t.Errorf("partner report by %s: top types %+v, top sub-systems %+v, want %d each", g, pr.TopEventTypes, pr.TopSubSystems, want)
		}
		// One type across sub-systems: its top list reads each sub-system's
		// counts over the range.
		one, err := svc.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to, Granularity: g, EventType: "view"})
		if err != nil {
			t.Fatal(err)
		}
		if one.TotalEvents != want || len(one.TopSubSystems) != 1 || one.TopSubSystems[0].EventCount != want {
			t.Errorf("partner report of one type by %s: total %d, top sub-systems %+v, want %d", g, one.TotalEvents, one.TopSubSystems, want)
		}
	}
}
