package reporter_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

var t0 = time.Date(2026, 2, 27, 0, 0, 0, 0, time.UTC)

func TestReports(t *testing.T) {
	ctx := context.Background()
	store := testenv.Pebble(t)
	p := tenant.Partner{ID: tenant.NewID(), Code: "p", Name: "P", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	// 12 sub-systems; sub-system i gets i+1 events, spread over two days.
	var subs []tenant.SubSystem
	var evs []event.Event
	for i := 0; i < 12; i++ {
		ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: fmt.Sprint("s", i), Name: fmt.Sprint("Sub ", i), Status: tenant.Active}
		if err := store.CreateSubSystem(ctx, ss); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, ss)
		for j := 0; j <= i; j++ {
			typ := "view"
			if j%2 == 1 {
				typ = "click"
			}
			evs = append(evs, event.Event{ID: fmt.Sprint(i, "-", j), PartnerID: p.ID, SubSystemID: ss.ID, EventType: typ,
				Timestamp: t0.Add(time.Duration(j*5) * time.Hour)})
		}
	}
	if _, err := store.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(store, zerolog.Nop())

	// Sub-system 11 has 12 events at hours 0,5,...,55: 6 views, 6 clicks.
	sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[11].ID, From: t0.Add(30 * time.Minute), To: t0.Add(56 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if sr.TotalEvents != 12 || sr.EventsByType["view"] != 6 || sr.EventsByType["click"] != 6 || len(sr.TimeSeries) != 56 {
		t.Fatalf("sub-system report: total %d, %v, %d points", sr.TotalEvents, sr.EventsByType, len(sr.TimeSeries))
	}
	if !sr.From.Equal(t0) || sr.TimeSeries[5].Count != 1 || sr.TimeSeries[6].Count != 0 || sr.TimeSeries[55].Count != 1 {
		t.Fatalf("series not aligned and zero-filled: from %v, %+v", sr.From, sr.TimeSeries[:7])
	}
	sr, _ = r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[11].ID, From: t0, To: t0.Add(24 * time.Hour), EventType: "click"})
	if sr.TotalEvents != 2 || len(sr.EventsByType) != 1 { // clicks at hours 5 and 15
		t.Fatalf("filtered: %d %v", sr.TotalEvents, sr.EventsByType)
	}

	pr, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: t0, To: t0.AddDate(0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if pr.TotalEvents != 78 || len(pr.TopSubSystems) != 10 || pr.TopSubSystems[0].SubSystemID != subs[11].ID ||
		pr.TopSubSystems[0].EventCount != 12 || pr.TopSubSystems[9].EventCount != 3 || pr.TopSubSystems[0].SubSystemName != "Sub 11" {
		t.Fatalf("partner report: total %d, top %+v", pr.TotalEvents, pr.TopSubSystems)
	}
	if len(pr.TimeSeries) != 3 || pr.TimeSeries[0].Timestamp != t0 || pr.TimeSeries[2].Count != 3 { // day 3: hour 50 of subs 10 and 11, hour 55 of sub 11
		t.Fatalf("daily series: %+v", pr.TimeSeries)
	}
	var sum int64
	for _, pt := range pr.TimeSeries {
		sum += pt.Count
	}
	if sum != 78 {
		t.Fatalf("daily series sums to %d", sum)
	}

	for name, q := range map[string]report.SubSystemQuery{
		"reversed":  {SubSystemID: subs[0].ID, From: t0, To: t0.Add(-time.Hour)},
		"too long":  {SubSystemID: subs[0].ID, From: t0, To: t0.AddDate(2, 0, 0)},
		"no range":  {SubSystemID: subs[0].ID},
		"not found": {SubSystemID: tenant.NewID(), From: t0, To: t0.Add(time.Hour)},
		"bad id":    {SubSystemID: "x", From: t0, To: t0.Add(time.Hour)},
	} {
		_, err := r.SubSystemReport(ctx, q)
		if s := apierr.From(err).Code.Status(); s != 400 && s != 404 {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Ranges whose widened ends leave the range every instant lies in are
	// refused, whoever sends them: never an answer that cannot be encoded.
	y9999 := time.Date(9999, 12, 31, 22, 30, 0, 0, time.UTC)
	for name, q := range map[string][2]time.Time{
		"inside 9999":    {y9999, y9999.Add(time.Minute)},
		"to past 9999":   {y9999, y9999.Add(2 * time.Hour)},
		"before 1970":    {instant.Min.Add(-time.Hour), instant.Min.Add(time.Hour)},
		"ends past 2200": {instant.Max.Add(-time.Hour), instant.Max.Add(time.Minute)},
	} {
		_, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[0].ID, From: q[0], To: q[1]})
		_, perr := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: q[0], To: q[1]})
		if !apierr.Is(err, apierr.InvalidParameter) || !apierr.Is(perr, apierr.InvalidParameter) {
			t.Errorf("%s: %v, %v", name, err, perr)
		}
	}
	if _, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[0].ID, From: instant.Max.Add(-time.Hour), To: instant.Max}); err != nil {
		t.Errorf("a range ending at the bound: %v", err)
	}

	if _, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: tenant.NewID(), From: t0, To: t0.Add(time.Hour)}); !apierr.Is(err, apierr.PartnerNotFound) {
		t.Errorf("unknown partner: %v", err)
	}
}

// A partner's top list names its sub-systems, deleted ones included (their
// events still count), and a sub-system of another partner that a publisher
// on the bus named.
func TestTopSubSystemNames(t *testing.T) {
	ctx := context.Background()
	store := testenv.Pebble(t)
	p := tenant.Partner{ID: tenant.NewID(), Code: "p", Name: "P", Status: tenant.Active}
	q := tenant.Partner{ID: tenant.NewID(), Code: "q", Name: "Q", Status: tenant.Active}
	for _, pp := range []tenant.Partner{p, q} {
		if err := store.CreatePartner(ctx, pp); err != nil {
			t.Fatal(err)
		}
	}
	live := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "live", Name: "Live", Status: tenant.Active}
	gone := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "gone", Name: "Gone", Status: tenant.Active}
	other := tenant.SubSystem{ID: tenant.NewID(), PartnerID: q.ID, Code: "other", Name: "Other", Status: tenant.Active}
	unknown := tenant.NewID()
	for _, ss := range []tenant.SubSystem{live, gone, other} {
		if err := store.CreateSubSystem(ctx, ss); err != nil {
			t.Fatal(err)
		}
	}
	var evs []event.Event
	for i, ss := range []string{live.ID, gone.ID, other.ID, unknown} {
		for j := 0; j <= i; j++ {
			evs = append(evs, event.Event{ID: fmt.Sprint(i, "-", j), PartnerID: p.ID, SubSystemID: ss, EventType: "view", Timestamp: t0.Add(time.Hour)})
		}
	}
	if _, err := store.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	gone, err := store.GetSubSystem(ctx, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	gone.Status = tenant.Deleted
	if err := store.UpdateSubSystem(ctx, gone); err != nil {
		t.Fatal(err)
	}
	counted := &lookups{Store: store}
	pq := report.PartnerQuery{PartnerID: p.ID, From: t0, To: t0.AddDate(0, 0, 1)}
	pr, err := reporter.New(counted, zerolog.Nop()).PartnerReport(ctx, pq)
	if err != nil {
		t.Fatal(err)
	}
	// The partner's own, deleted one included, come from one read: only
	// the other partner's and the unknown one are looked up by id.
	if counted.n != 2 {
		t.Errorf("%d sub-systems looked up one by one, want 2", counted.n)
	}
	got := map[string]string{}
	for _, s := range pr.TopSubSystems {
		got[s.SubSystemID] = s.SubSystemCode + "/" + s.SubSystemName
	}
	want := map[string]string{live.ID: "live/Live", gone.ID: "gone/Gone", other.ID: "other/Other", unknown: "/"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("top sub-systems named %v, want %v", got, want)
	}
	// A lookup that fails (not "not found") fails the report, rather than
	// an answer missing a name being cached for minutes.
	counted.fail = errors.New("store unavailable")
	if _, err := reporter.New(counted, zerolog.Nop()).PartnerReport(ctx, pq); !errors.Is(err, counted.fail) {
		t.Fatalf("with the lookup failing: %v", err)
	}
}

// lookups counts the sub-systems looked up by id, and fails them when told.
type lookups struct {
	*pebblestore.Store
	n    int
	fail error
}

func (l *lookups) GetSubSystem(ctx context.Context, id string) (tenant.SubSystem, error) {
	l.n++
	if l.fail != nil {
		return tenant.SubSystem{}, l.fail
	}
	return l.Store.GetSubSystem(ctx, id)
}
