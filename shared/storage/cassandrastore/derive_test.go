package cassandrastore

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Hours from half past and weeks dropped (a keyspace upgraded across them)
// and derived again from half hours and days read back as the fold wrote
// them: every count, group, sketch, pack entry and estimate. Manifests not
// yet folded are folded first, not counted twice; a row a fold wrote since
// the upgrade (a late event's, holding that event only) is replaced by the
// whole slot; a late event folded after counts once; deriving again
// changes nothing.
func TestDeriveSlots(t *testing.T) {
	t.Run("hours from half past", func(t *testing.T) {
		testDeriveSlots(t, storage.HalfPastHour, 29*time.Second, 4*time.Hour+40*time.Minute)
	})
	t.Run("weeks", func(t *testing.T) { testDeriveSlots(t, storage.Week, 25*time.Minute, 100*time.Hour) })
}

func testDeriveSlots(t *testing.T, res storage.Res, step, lateAfter time.Duration) {
	st := openStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	p := tenant.NewID()
	if err := st.CreatePartner(ctx, tenant.Partner{ID: p, Code: "hp" + p[len(p)-8:], Name: "HP", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}); err != nil {
		t.Fatal(err)
	}
	subs := []string{tenant.NewID(), tenant.NewID()}
	for i, id := range subs {
		if err := st.CreateSubSystem(ctx, tenant.SubSystem{ID: id, PartnerID: p, Code: fmt.Sprint("s", i), Name: fmt.Sprint("S", i), Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	span := 1200 * step // 9.7 hours, or 21 days
	start := now.Truncate(time.Hour).Add(-span - 20*time.Hour)
	var evs []event.Event
	for i := range 1200 {
		ts := start.Add(time.Duration(i) * step)
		evs = append(evs, event.Event{ID: fmt.Sprint("h-", i), PartnerID: p, SubSystemID: subs[i%2], EventType: fmt.Sprint("t", i%4),
			UserID: fmt.Sprint("u", i%500), Timestamp: ts})
	}
	write := func(evs []event.Event) {
		t.Helper()
		for k := 0; k < len(evs); k += 400 {
			if _, err := st.WriteEvents(ctx, evs[k:min(k+400, len(evs))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	fold := func() {
		t.Helper()
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	write(evs[:800])
	fold()
	from, to := start.Add(-time.Hour), start.Add(span+2*time.Hour)
	counts := []storage.CountsQuery{
		{Rollup: storage.SubSystemTypes, Key: subs[0]}, {Rollup: storage.SubSystemTypes, Key: subs[1]},
		{Rollup: storage.PartnerSubSystems, Key: p}, {Rollup: storage.PartnerTypes, Key: p},
	}
	users := []storage.UsersQuery{{Scope: storage.SubSystemUsers, Key: subs[0]}, {Scope: storage.SubSystemUsers, Key: subs[1]}, {Scope: storage.PartnerUsers, Key: p}}
	type figures struct {
		groups, totals [][]storage.Slot
		sketches       []map[time.Time]string
		estimates      []map[time.Time]uint64
	}
	read := func() figures {
		t.Helper()
		var f figures
		for _, q := range counts {
			q.Res, q.From, q.To = res, from, to
			q.Groups = true
			g, err := st.Counts(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			q.Groups = false // the packs
			n, err := st.Counts(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			f.groups, f.totals = append(f.groups, g), append(f.totals, n)
		}
		for _, q := range users {
			q.Res, q.From, q.To = res, from, to
			sk, est := map[time.Time]string{}, map[time.Time]uint64{}
			if err := st.Users(ctx, q, func(at time.Time, b []byte) error {
				var s hll.Sketch // as registers: a sketch may be encoded two ways
				if err := s.MergeBinary(b); err != nil {
					return err
				}
				d := hll.Dense()
				d.Merge(&s)
				sk[at] = string(d.Append(nil))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := st.UserEstimates(ctx, q, func(at time.Time, n uint64) error { est[at] = n; return nil }); err != nil {
				t.Fatal(err)
			}
			f.sketches, f.estimates = append(f.sketches, sk), append(f.estimates, est)
		}
		return f
	}
	setSince := func(t time.Time) {
		if res == storage.Week {
			st.weekSince = t
		} else {
			st.halfPastSince = t
		}
	}
	// As an upgrade leaves them: none, summed from their tiles.
	for _, k := range []struct {
		kind, a int8
		key     string
	}{{kindCounts, 0, subs[0]}, {kindCounts, 0, subs[1]}, {kindCounts, 1, p}, {kindCounts, 2, p}, {kindUsers, 0, subs[0]}, {kindUsers, 0, subs[1]}, {kindUsers, 1, p}} {
		for _, period := range periods(res, false, res.Slot(from), to) { // from's slot may start in the partition before
			if err := st.s.Query("DELETE FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ?",
				k.kind, k.a, k.key, int8(res), period).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
	setSince(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	// A late event folded since the upgrade: its hour's row holds it alone.
	late := start.Add(lateAfter)
	lateEv := func(id string) event.Event {
		return event.Event{ID: id, PartnerID: p, SubSystemID: subs[0], EventType: "t1", UserID: "late-" + id, Timestamp: late}
	}
	write([]event.Event{lateEv("late-1")})
	fold()
	var partial int64
	if err := st.s.Query("SELECT n FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		kindCounts, int8(storage.PartnerTypes), p, int8(res), periodOf(res, false, late), res.Slot(late)).Scan(&partial); err != nil || partial != 1 {
		t.Fatalf("the late event's row: n %d, %v", partial, err)
	}
	// And events not folded yet.
	write(evs[800:])
	want := read()
	var n int64
	for _, s := range want.totals[3] {
		n += s.Total
	}
	if n != int64(len(evs)+1) || len(want.totals[3]) < 3 || !res.Slot(want.totals[3][0].Start.Add(time.Minute)).Equal(want.totals[3][0].Start) {
		t.Fatalf("%v slots count %d of %d events in %d slots: %v", res, n, len(evs)+1, len(want.totals[3]), want.totals[3])
	}
	same := func(what string, got, want figures) {
		t.Helper()
		for i := range want.groups {
			if !reflect.DeepEqual(got.groups[i], want.groups[i]) || !reflect.DeepEqual(got.totals[i], want.totals[i]) {
				t.Fatalf("%s: %v counts:\n got %v / %v\nwant %v / %v", what, counts[i], got.groups[i], got.totals[i], want.groups[i], want.totals[i])
			}
		}
		for i := range want.sketches {
			if !reflect.DeepEqual(got.estimates[i], want.estimates[i]) {
				t.Fatalf("%s: %v estimates:\n got %v\nwant %v", what, users[i], got.estimates[i], want.estimates[i])
			}
			for at, sk := range want.sketches[i] {
				if got.sketches[i][at] != sk {
					t.Fatalf("%s: %v: the sketch of %v differs", what, users[i], at)
				}
			}
			if len(got.sketches[i]) != len(want.sketches[i]) {
				t.Fatalf("%s: %v: %d sketches, want %d", what, users[i], len(got.sketches[i]), len(want.sketches[i]))
			}
		}
	}
	rows := 0
	for _, ss := range want.groups {
		rows += len(ss)
	}
	for _, m := range want.sketches {
		rows += len(m)
	}
	derive := func() {
		t.Helper()
		setSince(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
		got, err := st.DeriveSlots(ctx, p, res, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if got != rows {
			t.Fatalf("derived %d rows, want %d", got, rows)
		}
		setSince(time.Unix(0, 0))
	}
	derive()
	same("derived", read(), want)
	fold()
	same("derived, then folded", read(), want)
	derive()
	same("derived again", read(), want)

	// A late event folded after: counted once, in its hour's row.
	write([]event.Event{lateEv("late-2")})
	fold()
	got := read()
	k := res.Slot(late)
	for i, ss := range got.totals {
		for j, s := range ss {
			if s.Start.Equal(k) && (i == 0 || i == 2 || i == 3) {
				got.totals[i][j].Total--
			}
		}
	}
	for i := range want.groups {
		if i == 1 {
			continue
		}
		if !reflect.DeepEqual(got.totals[i], want.totals[i]) {
			t.Fatalf("a late event after: %v:\n got %v\nwant %v (plus one at %v)", counts[i], got.totals[i], want.totals[i], k)
		}
	}
}
