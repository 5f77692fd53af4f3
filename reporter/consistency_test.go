package reporter_test

import (
	"context"
	"fmt"
	"sync/atomic"
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

// While events are being written, a report's figures agree with each
// other: totalEvents is the sum of eventsByType, of the time series and of
// the top sub-systems, for the sub-system and the partner report alike. (A
// writer landing between two reads of a report gave a total of 1 with no
// type: make test caught it once.) On Pebble every figure of a report is
// read from one snapshot.
func TestFiguresAgreeWhileWriting(t *testing.T) {
	ctx := context.Background()
	store := testenv.Pebble(t)
	p := tenant.Partner{ID: tenant.NewID(), Code: "agree", Name: "Agree", Status: tenant.Active}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	// As deployed: the store traced (storage.Traced keeps its read view).
	r := reporter.New(storage.Traced(store), zerolog.Nop())
	now := time.Now().UTC()
	var written atomic.Int64
	done := make(chan error, 1)
	stop := make(chan struct{})
	exited := make(chan struct{})
	defer func() { close(stop); <-exited }() // never write after the store closes
	go func() {
		defer close(exited)
		for b := range 400 {
			select {
			case <-stop:
				return
			default:
			}
			e := event.Event{ID: fmt.Sprint("w-", b), PartnerID: p.ID, SubSystemID: ss.ID, EventType: fmt.Sprint("t", b%3),
				UserID: fmt.Sprint("u", b), Timestamp: now.Add(-time.Duration(b%50) * time.Minute)}
			if _, err := store.WriteEvents(ctx, []event.Event{e}); err != nil {
				done <- err
				return
			}
			written.Add(1)
		}
		done <- nil
	}()
	sum := func(m map[string]int64) (n int64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	series := func(pts []report.Point) (n int64) {
		for _, p := range pts {
			n += p.Count
		}
		return n
	}
	from, to := now.Add(-2*time.Hour), now.Add(time.Hour)
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: to, Granularity: "minute"})
		if err != nil {
			t.Fatal(err)
		}
		if sr.TotalEvents != sum(sr.EventsByType) || sr.TotalEvents != series(sr.TimeSeries) {
			t.Fatalf("sub-system report after %d writes: totalEvents %d, eventsByType %v, series %d", written.Load(), sr.TotalEvents, sr.EventsByType, series(sr.TimeSeries))
		}
		// Every event has a user of its own, and a minute holds at most 8:
		// a sketch that small counts exactly, so a point whose users
		// outnumber its events read its sketches after its counts.
		for _, pt := range sr.TimeSeries {
			if pt.UniqueUsers == nil || *pt.UniqueUsers > pt.Count {
				users := "no"
				if pt.UniqueUsers != nil {
					users = fmt.Sprint(*pt.UniqueUsers)
				}
				t.Fatalf("sub-system report after %d writes: %v has %d events and %s users", written.Load(), pt.Timestamp, pt.Count, users)
			}
		}
		pr, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to, Granularity: "hour"})
		if err != nil {
			t.Fatal(err)
		}
		var top int64
		for _, s := range pr.TopSubSystems {
			top += s.EventCount
		}
		if pr.TotalEvents != sum(pr.EventsByType) || pr.TotalEvents != series(pr.TimeSeries) || pr.TotalEvents != top {
			t.Fatalf("partner report after %d writes: totalEvents %d, eventsByType %v, series %d, top sub-systems %d",
				written.Load(), pr.TotalEvents, pr.EventsByType, series(pr.TimeSeries), top)
		}
	}
	sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: to, Granularity: "minute"})
	if err != nil || sr.TotalEvents != 400 {
		t.Fatalf("after the writes: %v, %v", sr, err)
	}
}
