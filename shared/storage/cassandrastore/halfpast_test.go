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

// Hours from half past dropped (a keyspace upgraded across them) and
// derived again from half hours read back as the fold wrote them: every
// count, group, sketch, pack entry and estimate; deriving twice writes
// nothing; and a row a fold wrote is not overwritten.
func TestDeriveHalfPastHours(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	p := tenant.NewID()
	subs := []string{tenant.NewID(), tenant.NewID()}
	start := time.Now().UTC().Truncate(time.Hour).Add(-30 * time.Hour)
	var evs []event.Event
	for i := range 1200 {
		ts := start.Add(time.Duration(i) * 29 * time.Second) // 9.7 hours
		evs = append(evs, event.Event{ID: fmt.Sprint("h-", i), PartnerID: p, SubSystemID: subs[i%2], EventType: fmt.Sprint("t", i%4),
			UserID: fmt.Sprint("u", i%500), Timestamp: ts})
	}
	for k := 0; k < len(evs); k += 400 {
		if _, err := st.WriteEvents(ctx, evs[k:k+400]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	from, to := start.Add(-time.Hour), start.Add(12*time.Hour)
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
			q.Res, q.From, q.To = storage.HalfPastHour, from, to
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
			q.Res, q.From, q.To = storage.HalfPastHour, from, to
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
	want := read()
	var n int64
	for _, s := range want.totals[3] {
		n += s.Total
	}
	if n != int64(len(evs)) || len(want.totals[3]) < 10 || want.totals[3][0].Start.Minute() != 30 {
		t.Fatalf("the fold's hours from half past count %d of %d events in %d slots: %v", n, len(evs), len(want.totals[3]), want.totals[3])
	}

	// As an upgrade leaves them: none, summed from half hours.
	for _, k := range []struct {
		kind, a int8
		key     string
	}{{kindCounts, 0, subs[0]}, {kindCounts, 0, subs[1]}, {kindCounts, 1, p}, {kindCounts, 2, p}, {kindUsers, 0, subs[0]}, {kindUsers, 0, subs[1]}, {kindUsers, 1, p}} {
		for _, period := range periods(storage.HalfPastHour, from, to) {
			if err := st.s.Query("DELETE FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ?",
				k.kind, k.a, k.key, int8(storage.HalfPastHour), period).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.halfPastSince = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
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
	same("summed from half hours", read(), want)
	// But a row a fold wrote since stays: one hour kept as a sentinel.
	kept := want.groups[3][4]
	const sentinel = 100_007
	if err := st.s.Query("UPDATE totals SET n = ?, groups = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		int64(sentinel), encodeCounts(map[string]int64{"x": sentinel}), encodeCounts(map[string]int64{"x": 1}), kindCounts, int8(storage.PartnerTypes), p, int8(storage.HalfPastHour), periodOf(storage.HalfPastHour, kept.Start), kept.Start).Exec(); err != nil {
		t.Fatal(err)
	}
	stmt, args := packUpdate(part{kindCounts, int8(storage.PartnerTypes), p, storage.HalfPastHour, periodOf(storage.HalfPastHour, kept.Start)}, kept.Start, sentinel, 3600)
	if err := st.s.Query(stmt, args...).Exec(); err != nil {
		t.Fatal(err)
	}
	derive := func() int {
		wrote := 0
		for _, q := range counts {
			k, err := st.DeriveHalfPastCounts(ctx, q.Rollup, q.Key, from, to, 48*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			wrote += k
		}
		for _, q := range users {
			k, err := st.DeriveHalfPastUsers(ctx, q.Scope, q.Key, from, to, 48*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			wrote += k
		}
		return wrote
	}
	rows := 0
	for _, f := range [][][]storage.Slot{want.groups} {
		for _, ss := range f {
			rows += len(ss)
		}
	}
	for _, m := range want.sketches {
		rows += len(m)
	}
	if got := derive(); got != rows-1 {
		t.Fatalf("derived %d rows, want %d (all but the one a fold wrote)", got, rows-1)
	}
	if again := derive(); again != 0 {
		t.Fatalf("deriving again wrote %d rows", again)
	}
	st.halfPastSince = time.Unix(0, 0)
	got := read()
	for i, s := range got.totals[3] {
		if s.Start.Equal(kept.Start) {
			if s.Total != sentinel {
				t.Fatalf("the row a fold wrote was overwritten: %+v", s)
			}
			got.totals[3][i].Total = kept.Total
		}
	}
	if ks, ok := slotAt(got.groups[3], kept.Start); !ok || ks.Total != sentinel {
		t.Fatalf("the row a fold wrote was overwritten: %+v", ks)
	}
	got.groups[3], want.groups[3] = without(got.groups[3], kept.Start), without(want.groups[3], kept.Start)
	same("derived", got, want)
}

func slotAt(ss []storage.Slot, at time.Time) (storage.Slot, bool) {
	for _, s := range ss {
		if s.Start.Equal(at) {
			return s, true
		}
	}
	return storage.Slot{}, false
}

func without(ss []storage.Slot, at time.Time) []storage.Slot {
	var out []storage.Slot
	for _, s := range ss {
		if !s.Start.Equal(at) {
			out = append(out, s)
		}
	}
	return out
}
