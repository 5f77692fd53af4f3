package reporter_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// TestUniqueUsersAtScale: 100,000 known users (one event each, over two
// days, some by anonymousId), stored in batches the way
// workers store them; the reports' uniqueUsers for the range is within the
// documented error (three standard errors), on both backends, and each
// day's figure too.
func TestUniqueUsersAtScale(t *testing.T) {
	testenv.Heavy(t)
	for name, open := range backendtest.All(t, "users") {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			ctx := context.Background()
			p := tenant.Partner{ID: tenant.NewID(), Code: "many", Name: "Many", Status: tenant.Active}
			ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
			if err := store.CreatePartner(ctx, p); err != nil {
				t.Fatal(err)
			}
			if err := store.CreateSubSystem(ctx, ss); err != nil {
				t.Fatal(err)
			}
			const users = 100_000
			day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
			var batch []event.Event
			flush := func() {
				if _, err := store.WriteEvents(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
			perDay := [2]map[int]bool{{}, {}}
			for k := range 1 {
				for u := range users {
					d := (u + k) % 2
					perDay[d][u] = true
					e := event.Event{ID: fmt.Sprint("e", k, "-", u), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view",
						Timestamp: day.AddDate(0, 0, d).Add(time.Duration(u%86400) * time.Second)}
					if u%5 == 0 {
						e.AnonymousID = fmt.Sprint("device-", u)
					} else {
						e.UserID = fmt.Sprint("user-", u)
					}
					if batch = append(batch, e); len(batch) == 2000 {
						flush()
					}
				}
			}
			flush()
			r := reporter.New(store, zerolog.Nop())
			rep, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: day, To: day.AddDate(0, 0, 2), Granularity: "day"})
			if err != nil {
				t.Fatal(err)
			}
			within := func(what string, got *int64, want int) {
				t.Helper()
				if got == nil {
					t.Fatalf("%s: no uniqueUsers", what)
				}
				e := math.Abs(float64(*got)-float64(want)) / float64(want)
				if e > 3*report.UniqueUsersError {
					t.Fatalf("%s: %d unique users, want %d within %.1f%% (off by %.2f%%)", what, *got, want, 300*report.UniqueUsersError, 100*e)
				}
				t.Logf("%s: %d unique users of %d (%.2f%% off; standard error %.2f%%)", what, *got, want, 100*e, 100*report.UniqueUsersError)
			}
			if rep.TotalEvents != users {
				t.Fatalf("%d events", rep.TotalEvents)
			}
			within("range", rep.UniqueUsers, users)
			for d := range 2 {
				within(fmt.Sprint("day ", d), rep.TimeSeries[d].UniqueUsers, len(perDay[d]))
			}
			sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: day, To: day.AddDate(0, 0, 2), Granularity: "day", TZ: "Asia/Kolkata"})
			if err != nil {
				t.Fatal(err)
			}
			within("sub-system, Kolkata days", sr.UniqueUsers, users)
		})
	}
}
