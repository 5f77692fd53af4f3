package reporter_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// TestReportsInZones is the exactness test: events at known instants
// around the day boundaries of zones offset by 30 and 45 minutes (St
// John's, at -03:30 and -02:30, with DST too), around Berlin's DST changes and a month's and a week's start, with users,
// duplicates inside and across batches, retries with a new timestamp, a
// reused id with other content, and late events written last; then every
// figure of every granularity (minute to month), zone and filter of both
// reports (series counts and users, totals, by type, top lists, unique
// users) equals one computed from the raw events with the zone's own
// calendar, on both backends.
func TestReportsInZones(t *testing.T) {
	testenv.Heavy(t)
	for name, open := range backendtest.All(t, "reporter") {
		t.Run(name, func(t *testing.T) { testReportsInZones(t, open(t), true) })
	}
	// A keyspace upgraded from a release without half hours and six hours:
	// their slots summed from quarters and hours, every figure the same;
	// nor the users of each type, which it then leaves out.
	t.Run("cassandra, upgraded keyspace", func(t *testing.T) {
		testReportsInZones(t, backendtest.CassandraUpgraded(t, "reporter"), false)
	})
	// The same with a point keeping almost none of its sparse sketches for
	// the union: the rest are merged as they come, and every figure holds.
	defer reporter.SetMaxKept(4)()
	t.Run("pebble, sketches merged as read", func(t *testing.T) { testReportsInZones(t, testenv.Pebble(t), true) })
}

// lastTransition is the latest last-Sunday-of-month (Berlin's DST days)
// of the month before now, at hh:00 UTC.
func lastTransition(now time.Time, month time.Month, hh int) time.Time {
	for y := now.Year(); ; y-- {
		d := time.Date(y, month+1, 1, hh, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
		for d.Weekday() != time.Sunday {
			d = d.AddDate(0, 0, -1)
		}
		if d.Before(now.AddDate(0, 0, -2)) {
			return d
		}
	}
}

// bucketKeys name the bucket holding an instant, from the zone's own
// calendar (time.Format in the zone), independent of the reporter's.
var bucketKeys = map[string]func(time.Time) string{
	"minute": func(t time.Time) string { return t.Format("2006-01-02T15:04 -0700") },
	"hour":   func(t time.Time) string { return t.Format("2006-01-02T15 -0700") },
	"day":    func(t time.Time) string { return t.Format(time.DateOnly) },
	"week":   func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, "-W", w) },
	"month":  func(t time.Time) string { return t.Format("2006-01") },
}

func testReportsInZones(t *testing.T, store storage.Store, wantTyped bool) {
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
	now := time.Now().UTC()
	spring := lastTransition(now, time.March, 1)   // Berlin 02:00 -> 03:00
	autumn := lastTransition(now, time.October, 1) // Berlin 03:00 -> 02:00
	day := func(t time.Time) time.Time { return t.Truncate(24 * time.Hour) }
	// Instants a minute either side of the boundaries that matter.
	bases := []time.Time{
		day(spring).AddDate(0, 0, -18).Add(18*time.Hour + 30*time.Minute), // midnight in Kolkata
		day(spring).AddDate(0, 0, -18).Add(18*time.Hour + 15*time.Minute), // midnight in Kathmandu
		day(spring).Add(2*time.Hour + 30*time.Minute),                     // midnight in St John's (-02:30 by then)
		spring,                          // Berlin springs forward
		day(spring).Add(22 * time.Hour), // midnight in Berlin after it
		day(spring).AddDate(0, 0, 1),    // a Monday in UTC
		autumn.Add(-30 * time.Minute),   // Berlin's doubled hour, first time (02:30 +02)
		autumn.Add(30 * time.Minute),    // and second (02:30 +01)
		day(autumn).Add(-2 * time.Hour), // midnight in Berlin
		time.Date(autumn.Year(), autumn.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Hour), // a month starts in Berlin
	}
	types := []string{"view", "click", "buy"}
	var evs, late []event.Event // evs: every event counted
	n := 0
	for i, b := range bases {
		for _, d := range []time.Duration{-time.Minute, -time.Second, 0, 30 * time.Second, time.Minute} {
			for k := range 1 + (i+n)%3 {
				n++
				e := event.Event{ID: fmt.Sprint("z-", n), PartnerID: p.ID, SubSystemID: subs[(i+k)%2].ID,
					EventType: types[(n+k)%3], Timestamp: b.Add(d), ReceivedAt: b.Add(d)}
				switch n % 4 {
				case 0:
					e.UserID = fmt.Sprint("user-", n%7)
				case 1:
					e.AnonymousID = fmt.Sprint("user-", n%5) // another namespace
				case 2:
					e.UserID, e.AnonymousID = fmt.Sprint("user-", n%11), "anon"
				}
				if n%5 == 0 {
					late = append(late, e)
				}
				evs = append(evs, e)
			}
		}
	}
	// On time: every event but the late ones, each batch twice.
	var onTime []event.Event
	for _, e := range evs {
		if e.ID[len(e.ID)-1] != '0' && e.ID[len(e.ID)-1] != '5' {
			onTime = append(onTime, e)
		}
	}
	for i := 0; i < len(onTime); i += 40 {
		for range 2 {
			if _, err := store.WriteEvents(ctx, onTime[i:min(i+40, len(onTime))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Folded, where a backend folds (Cassandra): the rows then hold what
	// reports read, users rows their estimates too, and the late events
	// below are in manifests over them.
	if f, ok := store.(interface {
		FoldPending(context.Context, time.Time) error
	}); ok {
		if err := f.FoldPending(ctx, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// Retries with a new timestamp (not counted again, nor moved), a reused
	// id with other content (refused), then the late events.
	var retries []event.Event
	for _, e := range onTime[:10] {
		e.Timestamp = e.Timestamp.Add(26 * time.Hour)
		retries = append(retries, e)
	}
	other := onTime[3]
	other.EventType, other.UserID = "other", "someone-else"
	retries = append(retries, other)
	if r, err := store.WriteEvents(ctx, retries); err != nil || r.Written != 0 || len(r.Conflicts) != 1 {
		t.Fatalf("retries: %+v %v", r, err)
	}
	if _, err := store.WriteEvents(ctx, late); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(store, zerolog.Nop())
	type window struct{ from, to time.Time }
	windows := map[string][]window{}
	for _, b := range bases {
		windows["minute"] = append(windows["minute"], window{b.Add(-12 * time.Hour), b.Add(12 * time.Hour)})
	}
	for _, b := range []time.Time{spring, autumn} {
		windows["hour"] = append(windows["hour"], window{b.AddDate(0, 0, -20), b.AddDate(0, 0, 20)})
	}
	all := window{day(spring).AddDate(0, 0, -40), day(autumn).AddDate(0, 0, 45)}
	for _, g := range []string{"day", "week", "month"} {
		windows[g] = []window{all}
	}
	// A store that keeps each type's users counts them with eventType; one
	// that does not (a keyspace upgraded across the release that keeps
	// them, before it) leaves them out.
	typedUsers := storage.KeepsUsers(store, storage.SubSystemTypeUsers, all.from)
	if typedUsers != storage.KeepsUsers(store, storage.PartnerTypeUsers, all.from) {
		t.Fatal("a store keeps the users of one type for sub-systems or partners, not both")
	}
	if typedUsers != wantTyped {
		t.Fatalf("users of one type kept: %v, want %v", typedUsers, wantTyped)
	}
	checked := 0
	for _, zone := range []string{"UTC", "Asia/Kolkata", "Asia/Kathmandu", "Europe/Berlin", "America/St_Johns"} {
		loc, _ := time.LoadLocation(zone)
		for g, ws := range windows {
			key := bucketKeys[g]
			for _, w := range ws {
				// What the raw events say, for a filter.
				expect := func(match func(e *event.Event) bool) (series map[string]int64, users map[string]*hll.Sketch, byType, bySub map[string]int64, total int64, allUsers *hll.Sketch) {
					series, users, byType, bySub, allUsers = map[string]int64{}, map[string]*hll.Sketch{}, map[string]int64{}, map[string]int64{}, &hll.Sketch{}
					for i := range evs {
						e := &evs[i]
						if !match(e) || e.Timestamp.Before(w.from) || !e.Timestamp.Before(w.to) {
							continue
						}
						k := key(e.Timestamp.In(loc))
						series[k]++
						byType[e.EventType]++
						bySub[e.SubSystemID]++
						total++
						if users[k] == nil {
							users[k] = &hll.Sketch{}
						}
						if u := storage.UserOf(e); u != "" {
							users[k].Add(u)
							allUsers.Add(u)
						}
					}
					return
				}
				compare := func(what string, rep []report.Point, repTotal int64, repUsers *int64, byTypeGot map[string]int64, match func(*event.Event) bool, withUsers bool) (map[string]int64, map[string]int64) {
					t.Helper()
					series, users, byType, bySub, total, allUsers := expect(match)
					got := map[string]int64{}
					for i, pt := range rep {
						// As sent: the zone's offset at that instant.
						if _, off := pt.Timestamp.Zone(); off != func() int { _, o := pt.Timestamp.In(loc).Zone(); return o }() {
							t.Fatalf("%s %s %s: point %d stamped with offset %ds, not %s's", what, zone, g, i, off, zone)
						}
						if i > 0 && !pt.Timestamp.After(rep[i-1].Timestamp) {
							t.Fatalf("%s %s %s: points out of order at %d", what, zone, g, i)
						}
						k := key(pt.Timestamp.In(loc))
						if pt.Count > 0 {
							got[k] += pt.Count
						}
						if withUsers != (pt.UniqueUsers != nil) {
							t.Fatalf("%s %s %s: point %d uniqueUsers %v", what, zone, g, i, pt.UniqueUsers)
						}
						if withUsers {
							var want uint64
							if users[k] != nil {
								want = users[k].Estimate()
							}
							if uint64(*pt.UniqueUsers) != want {
								t.Fatalf("%s %s %s: point %s has %d users, want %d", what, zone, g, k, *pt.UniqueUsers, want)
							}
						}
					}
					if repTotal != total || fmt.Sprint(got) != fmt.Sprint(series) {
						t.Fatalf("%s %s %s [%s, %s): total %d, want %d\n got %v\nwant %v", what, zone, g, w.from.Format(time.RFC3339), w.to.Format(time.RFC3339), repTotal, total, got, series)
					}
					if fmt.Sprint(byTypeGot) != fmt.Sprint(byType) {
						t.Fatalf("%s %s %s: by type %v, want %v", what, zone, g, byTypeGot, byType)
					}
					if withUsers != (repUsers != nil) || (withUsers && uint64(*repUsers) != allUsers.Estimate()) {
						t.Fatalf("%s %s %s: uniqueUsers %v, want %d", what, zone, g, repUsers, allUsers.Estimate())
					}
					checked++
					return byType, bySub
				}
				for _, ss := range subs {
					// With users, twice: a store that keeps the users of
					// unions of slots (Cassandra) answers the second from them.
					for _, et := range []string{"", "", "click"} {
						rep, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: w.from, To: w.to, Granularity: g, TZ: zone, EventType: et})
						if err != nil {
							t.Fatalf("%s %s: %v", zone, g, err)
						}
						compare("sub-system "+ss.Code+" "+et, rep.TimeSeries, rep.TotalEvents, rep.UniqueUsers, rep.EventsByType,
							func(e *event.Event) bool { return e.SubSystemID == ss.ID && (et == "" || e.EventType == et) }, et == "" || typedUsers)
					}
				}
				for _, sub := range []string{"", subs[1].ID} {
					for _, et := range []string{"", "", "view"} {
						rep, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: w.from, To: w.to, Granularity: g, TZ: zone, SubSystemID: sub, EventType: et, Top: 2})
						if err != nil {
							t.Fatalf("partner %s %s: %v", zone, g, err)
						}
						byType, bySub := compare("partner "+sub+" "+et, rep.TimeSeries, rep.TotalEvents, rep.UniqueUsers, rep.EventsByType,
							func(e *event.Event) bool {
								return (sub == "" || e.SubSystemID == sub) && (et == "" || e.EventType == et)
							}, et == "" || typedUsers)
						if want := topOf(byType, 2); fmt.Sprint(typeCounts(rep.TopEventTypes)) != fmt.Sprint(want) {
							t.Fatalf("partner %s %s %q %q: top types %v, want %v", zone, g, sub, et, rep.TopEventTypes, want)
						}
						var gotSubs [][2]any
						for _, sc := range rep.TopSubSystems {
							gotSubs = append(gotSubs, [2]any{sc.SubSystemID, sc.EventCount})
						}
						if want := topOf(bySub, 2); fmt.Sprint(gotSubs) != fmt.Sprint(want) {
							t.Fatalf("partner %s %s %q %q: top sub-systems %v, want %v", zone, g, sub, et, gotSubs, want)
						}
					}
				}
			}
		}
	}
	t.Logf("%d reports checked against the raw events", checked)

	from, to := all.from, all.to
	// Berlin's spring day has 23 hourly points, its autumn day 25.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, c := range []struct {
		day  time.Time
		want int
	}{{spring, 23}, {autumn, 25}} {
		d := time.Date(c.day.Year(), c.day.Month(), c.day.Day(), 0, 0, 0, 0, berlin)
		rep, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: subs[0].ID, From: d, To: d.AddDate(0, 0, 1), TZ: "Europe/Berlin"})
		if err != nil || len(rep.TimeSeries) != c.want {
			t.Fatalf("%s in Berlin: %d hourly points, want %d (%v)", d.Format(time.DateOnly), len(rep.TimeSeries), c.want, err)
		}
	}

	// Bad parameters name themselves.
	for _, c := range []struct {
		q     report.SubSystemQuery
		field string
	}{
		{report.SubSystemQuery{Granularity: "fortnight"}, "granularity"},
		{report.SubSystemQuery{Granularity: "minute"}, "granularity"}, // 10,080 minutes
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

// topOf is the top n of counts, by count then key.
func topOf(m map[string]int64, n int) [][2]any {
	var out [][2]any
	for k, v := range m {
		out = append(out, [2]any{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][1].(int64) != out[j][1].(int64) {
			return out[i][1].(int64) > out[j][1].(int64)
		}
		return out[i][0].(string) < out[j][0].(string)
	})
	return out[:min(n, len(out))]
}

func typeCounts(ts []report.TypeCount) [][2]any {
	var out [][2]any
	for _, tc := range ts {
		out = append(out, [2]any{tc.EventType, tc.EventCount})
	}
	return out
}
