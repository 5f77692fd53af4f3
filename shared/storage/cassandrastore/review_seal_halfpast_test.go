package cassandrastore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Review: hours from half past over a month's end (the partition is a
// month, a typed one a day; packSlot is the UTC day of month), counts,
// users and the users of a type: sealed, the figures read back are those
// of the hour rows and of the events, before and after the seal.
func TestReviewSealHalfPastOverAMonthEnd(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	now := time.Now().UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0) // a month that began over 28 days ago
	last := first.AddDate(0, 0, -1)                                                        // the previous month's last day
	res := storage.HalfPastHour
	want := map[time.Time]int64{}
	users := map[time.Time]map[string]bool{}
	var evs []event.Event
	for i := range 2 * 24 * 3 { // every 20 minutes of last and first
		ts := last.Add(time.Duration(i)*20*time.Minute + 7*time.Minute)
		u := fmt.Sprint("u", i%25)
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: sub, EventType: "view", UserID: u, Timestamp: ts})
		s := res.Slot(ts)
		want[s]++
		if users[s] == nil {
			users[s] = map[string]bool{}
		}
		users[s][u] = true
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	from, to := last.Add(res.Phase()), first.Add(24*time.Hour+res.Phase())
	typed := storage.TypedKey(sub, "view")
	var parts []part
	days := []time.Time{from, first.Add(res.Phase())}
	for _, d := range days {
		parts = append(parts,
			part{kindCounts, int8(storage.SubSystemTypes), sub, res, periodOf(res, false, d)},
			part{kindUsers, int8(storage.SubSystemUsers), sub, res, periodOf(res, false, d)},
			part{kindUsers, int8(storage.SubSystemTypeUsers), typed, res, periodOf(res, true, d)})
	}
	rowN := func(pt part, s time.Time) int64 {
		table, where, args := pt.rows()
		var n int64
		if err := st.s.Query("SELECT n FROM "+table+" WHERE "+where+" AND slot = ?", append(args, s)...).Scan(&n); err != nil {
			t.Fatalf("%v %v: %v", pt, s, err)
		}
		return n
	}
	check := func(when string) {
		t.Helper()
		counts, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: res, From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		got := map[time.Time]int64{}
		for _, sl := range counts {
			got[sl.Start] = sl.Total
		}
		w := map[time.Time]int64{}
		for s, n := range want {
			if !s.Before(from) && s.Before(to) {
				w[s] = n
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("%s: counts\n%v\nwant\n%v", when, got, w)
		}
		for i, q := range []storage.UsersQuery{{Scope: storage.SubSystemUsers, Key: sub}, {Scope: storage.SubSystemTypeUsers, Key: typed}} {
			q.Res, q.From, q.To = res, from, to
			n := 0
			if err := st.UserEstimates(ctx, q, func(s time.Time, est uint64) error {
				n++
				pt := parts[1+i]
				if s.UTC().Month() == first.Month() {
					pt = parts[4+i]
				}
				if q.Scope == storage.SubSystemTypeUsers {
					pt.period = periodOf(res, true, s)
				}
				if r := rowN(pt, s); int64(est) != r {
					return fmt.Errorf("%s: %v users of %v: %d, its row's %d", when, q.Scope, s, est, r)
				}
				if d := float64(est) - float64(len(users[s])); d*d > 4 {
					return fmt.Errorf("%s: %v users of %v: %d, counted %d", when, q.Scope, s, est, len(users[s]))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != 48 {
				t.Fatalf("%s: %d hours of %v users, want 48", when, n, q.Scope)
			}
		}
	}
	sealedAll := func() bool {
		for i, pt := range parts {
			m, e, _, has := packRow(t, st, pt, packSlot(days[i/3]))
			if !has || len(m) != 0 {
				return false
			}
			if e.has != 1<<24-1 {
				t.Fatalf("%v: sealed hours %b, want all 24", pt, e.has)
			}
		}
		return true
	}
	st.sealSince = time.Unix(0, 0)
	check("before the seals")
	deadline := time.Now().Add(time.Minute)
	for !sealedAll() {
		if time.Now().After(deadline) {
			t.Fatal("the half-past packs were not sealed")
		}
		st.seals.Wait()
		check("sealing")
	}
	st.seals.Wait()
	check("sealed")
	// The day of half-past hours ends at 00:30 the next day: sealable an
	// hour after that, not before.
	if st.sealable(from, from.Add(25*time.Hour-time.Second)) || !st.sealable(from, from.Add(25*time.Hour)) {
		t.Fatal("a half-past day's pack: sealable at the wrong time")
	}
}
