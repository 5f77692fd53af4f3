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

// Review: one partition's read meets sealed days, days with a seal and
// late entries beside it, and days never sealed, in turn (a seal read for
// one day must not carry over to the next), over a range starting and
// ending mid-day: every hour is the hour row's n and the events' count.
func TestReviewSealMixedDaysInOneRead(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	st.sealSince = time.Now().Add(time.Hour) // reads do not seal: this test does
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 2, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0) // days 2-6 of last month
	want := map[time.Time]int64{}
	write := func(prefix string, evs []time.Time) {
		var es []event.Event
		for i, ts := range evs {
			es = append(es, event.Event{ID: fmt.Sprint(prefix, i), PartnerID: p, SubSystemID: sub, EventType: "view", UserID: fmt.Sprint(i % 7), Timestamp: ts})
			want[ts.Truncate(time.Hour)]++
		}
		if _, err := st.WriteEvents(ctx, es); err != nil {
			t.Fatal(err)
		}
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var ts []time.Time
	for i := range 5 * 24 * 2 {
		if i%5 != 3 { // some hours empty
			ts = append(ts, start.Add(time.Duration(i)*30*time.Minute+time.Minute))
		}
	}
	write("a", ts)
	pts := []part{
		{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, start)},
		{kindUsers, int8(storage.SubSystemUsers), sub, storage.Hour, periodOf(storage.Hour, false, start)},
	}
	seal := func(d time.Time) {
		for _, pt := range pts {
			if ok, err := st.sealPack(ctx, pt, packSlot(d)); err != nil || !ok {
				t.Fatalf("seal %v: %v, %v", d, ok, err)
			}
		}
	}
	seal(start)                  // sealed
	seal(start.AddDate(0, 0, 2)) // sealed, then late events beside it
	seal(start.AddDate(0, 0, 4)) // sealed
	write("late", []time.Time{start.AddDate(0, 0, 2).Add(3*time.Hour + 50*time.Minute), start.AddDate(0, 0, 2).Add(13*time.Hour + 2*time.Minute)})
	from, to := start.Add(5*time.Hour), start.AddDate(0, 0, 4).Add(20*time.Hour)
	counts, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: from, To: to})
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
		t.Fatalf("counts\n%v\nwant\n%v", got, w)
	}
	table, where, args := pts[1].rows()
	n := 0
	if err := st.UserEstimates(ctx, storage.UsersQuery{Scope: storage.SubSystemUsers, Key: sub, Res: storage.Hour, From: from, To: to}, func(s time.Time, est uint64) error {
		n++
		var r int64
		if err := st.s.Query("SELECT n FROM "+table+" WHERE "+where+" AND slot = ?", append(args, s)...).Scan(&r); err != nil {
			return fmt.Errorf("%v: %w", s, err)
		}
		if int64(est) != r {
			return fmt.Errorf("users of %v: %d, its row's %d", s, est, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(w) {
		t.Fatalf("%d hours of users, want %d", n, len(w))
	}
}
