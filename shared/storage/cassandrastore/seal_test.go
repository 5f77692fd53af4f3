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

// A seal decodes to its entries that have not expired; anything else is
// an error naming what is wrong, never entries made up.
func TestSealedEncoding(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	var e packEntries
	var exp [24]int64
	for _, h := range []int{0, 5, 23} {
		e.n[h], e.has = int64(h*1000+7), e.has|1<<h
	}
	exp[0], exp[5], exp[23] = 0, 1_000, 2_000 // never, then two expiries
	b := encodeSealed(e, &exp)
	for _, c := range []struct {
		now  int64
		want []int
	}{{999, []int{0, 5, 23}}, {1_000, []int{0, 23}}, {1_999, []int{0, 23}}, {2_000, []int{0}}} {
		got, gotExp, err := decodeSealed(b, c.now)
		if err != nil {
			t.Fatal(err)
		}
		var hours []int
		for h := range 24 {
			if got.has&(1<<h) != 0 {
				hours = append(hours, h)
				if got.n[h] != e.n[h] || gotExp[h] != exp[h] {
					t.Fatalf("at %d: hour %d is %d expiring %d, want %d expiring %d", c.now, h, got.n[h], gotExp[h], e.n[h], exp[h])
				}
			}
		}
		if fmt.Sprint(hours) != fmt.Sprint(c.want) {
			t.Fatalf("at %d: hours %v, want %v (an entry is dropped at its expiry, as its cell)", c.now, hours, c.want)
		}
	}
	if got, _, err := decodeSealed(nil, 0); err != nil || got.has != 0 {
		t.Fatalf("no seal: %+v, %v", got, err)
	}
	bad := map[string][]byte{
		"empty":           {},
		"short":           b[:3],
		"version":         append([]byte{9}, b[1:]...),
		"truncated":       b[:len(b)-1],
		"trailing":        append(append([]byte{}, b...), 0),
		"hour 24":         {sealedVersion, 1, 0, 0, 0, 1, 0},
		"no expiry":       {sealedVersion, 0, 0, 0, 1, 1},
		"huge count":      append([]byte{sealedVersion, 0, 0, 0, 1}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0),
		"overlong varint": append([]byte{sealedVersion, 0, 0, 0, 1}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0),
	}
	for name, in := range bad {
		if got, _, err := decodeSealed(in, 0); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", name, got)
		}
	}
}

// packRow is a pack as stored: its map, its seal's entries live at now and
// their expiries, and whether it has a seal.
func packRow(t *testing.T, st *Store, p part, day time.Time) (m map[int]int64, sealed packEntries, exp [24]int64, has bool) {
	t.Helper()
	table, where, args := p.rows()
	var b []byte
	if err := st.s.Query("SELECT pack, sealed FROM "+table+" WHERE "+where+" AND slot = ?", append(args, day)...).Scan(&m, &b); err != nil {
		t.Fatal(err)
	}
	sealed, exp, err := decodeSealed(b, time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	return m, sealed, exp, b != nil
}

// A day ended over sealAfter ago is sealed by a read of its hours: counts,
// users and the users of a type, each its map deleted and its seal
// holding every entry, expiring no later than its hour row. Figures read
// before the seal, after it, with a late event's entry in the map beside
// it, and sealed again, are those counted from the events.
func TestSealDay(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	want := map[time.Time]int64{}
	users := map[time.Time]map[string]bool{}
	write := func(prefix string, n int, at func(i int) time.Time) {
		t.Helper()
		var evs []event.Event
		for i := range n {
			ts := at(i)
			u := fmt.Sprint("u", i%40)
			evs = append(evs, event.Event{ID: fmt.Sprint(prefix, i), PartnerID: p, SubSystemID: sub, EventType: "view", UserID: u, Timestamp: ts})
			h := ts.Truncate(time.Hour)
			want[h]++
			if users[h] == nil {
				users[h] = map[string]bool{}
			}
			users[h][u] = true
		}
		if _, err := st.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 480, func(i int) time.Time { return day.Add(time.Duration(i) * 3 * time.Minute) }) // every hour of the day
	from, to := day, day.Add(24*time.Hour)
	typed := storage.TypedKey(sub, "view")
	parts := []part{
		{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, day)},
		{kindUsers, int8(storage.SubSystemUsers), sub, storage.Hour, periodOf(storage.Hour, false, day)},
		{kindUsers, int8(storage.SubSystemTypeUsers), typed, storage.Hour, periodOf(storage.Hour, true, day)},
	}
	check := func(when string) {
		t.Helper()
		counts, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		got := map[time.Time]int64{}
		for _, sl := range counts {
			got[sl.Start] = sl.Total
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: hours\n%v\nwant\n%v", when, got, want)
		}
		for i, q := range []storage.UsersQuery{{Scope: storage.SubSystemUsers, Key: sub}, {Scope: storage.SubSystemTypeUsers, Key: typed}} {
			q.Res, q.From, q.To = storage.Hour, from, to
			table, where, args := parts[1+i].rows()
			n := 0
			if err := st.UserEstimates(ctx, q, func(s time.Time, est uint64) error {
				n++
				// The estimate of the hour's row, which the pack holds.
				var w int64
				if err := st.s.Query("SELECT n FROM "+table+" WHERE "+where+" AND slot = ?", append(args, s)...).Scan(&w); err != nil {
					return err
				}
				if est != uint64(w) {
					return fmt.Errorf("%s: %v users of %v: %d, its row's %d", when, q.Scope, s, est, w)
				}
				if d := float64(est) - float64(len(users[s])); d*d > 4 {
					return fmt.Errorf("%s: %v users of %v: %d, counted %d", when, q.Scope, s, est, len(users[s]))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != 24 {
				t.Fatalf("%s: %d hours of %v users, want 24", when, n, q.Scope)
			}
		}
	}
	// sealedAll tells whether every part's day is sealed with 24 entries
	// and an empty map; it fails if an entry outlives its hour row.
	sealedAll := func() bool {
		t.Helper()
		for _, pt := range parts {
			m, e, exp, has := packRow(t, st, pt, packSlot(day))
			if !has || len(m) != 0 {
				return false
			}
			if e.has != 1<<24-1 {
				t.Fatalf("%v: a seal of hours %b, want all 24", pt, e.has)
			}
			table, where, args := pt.rows()
			for h := range 24 {
				var ttl *int
				if err := st.s.Query("SELECT TTL(through) FROM "+table+" WHERE "+where+" AND slot = ?", append(args, day.Add(time.Duration(h)*time.Hour))...).Scan(&ttl); err != nil {
					t.Fatal(err)
				}
				if ttl == nil || exp[h] == 0 || exp[h] > time.Now().Unix()+int64(*ttl)+1 {
					t.Fatalf("%v hour %d: sealed to expire at %d (0: never), its row's TTL %s: a count may not outlive its row", pt, h, exp[h], ttlText(ttl))
				}
			}
		}
		return true
	}
	// awaitSeals reads until every part is sealed (each read may seal
	// what it found), waiting for the seals a read started.
	awaitSeals := func(when string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !sealedAll() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the day's packs were not sealed", when)
			}
			check(when + ", sealing")
			st.seals.Wait()
		}
	}
	// Sealing off (the layout's mark ahead): reads leave the maps alone.
	st.sealSince = time.Now().Add(time.Hour)
	check("before the mark")
	st.seals.Wait()
	for _, pt := range parts {
		if m, _, _, has := packRow(t, st, pt, packSlot(day)); has || len(m) != 24 {
			t.Fatalf("%v before the mark: %d map entries, seal %v; want the map alone", pt, len(m), has)
		}
	}
	st.sealSince = time.Unix(0, 0)
	awaitSeals("sealed")
	check("sealed")
	// Late events in three hours: their entries go to the map beside the
	// seal, and win.
	write("late", 30, func(i int) time.Time { return day.Add(time.Duration(i%3)*7*time.Hour + 90*time.Second) })
	m, _, _, has := packRow(t, st, parts[0], packSlot(day))
	if !has || len(m) != 3 {
		t.Fatalf("after late events: %d map entries beside the seal (%v), want 3", len(m), has)
	}
	st.sealSince = time.Now().Add(time.Hour) // read them beside the seal first
	check("late events beside the seal")
	st.sealSince = time.Unix(0, 0)
	awaitSeals("sealed again")
	check("sealed again")
	// A day not ended sealAfter ago is not sealed.
	if st.sealable(time.Now().Add(-24*time.Hour-sealAfter+time.Minute), time.Now()) {
		t.Fatal("a day ended less than sealAfter ago is sealable")
	}
}

// A fold between a seal's read and its write: the seal's condition fails
// and nothing is lost; the next seal takes the fold's entry.
func TestSealLosesToAFold(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	ev := func(id string, at time.Time) event.Event {
		return event.Event{ID: id, PartnerID: p, SubSystemID: sub, EventType: "view", UserID: id, Timestamp: at}
	}
	if _, err := st.WriteEvents(ctx, []event.Event{ev("a", day.Add(time.Hour)), ev("b", day.Add(2*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	pt := part{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, day)}
	folded := false
	st.sealHook = func() {
		if folded {
			return
		}
		folded = true
		if _, err := st.WriteEvents(ctx, []event.Event{ev("c", day.Add(time.Hour+time.Minute)), ev("d", day.Add(5*time.Hour))}); err != nil {
			t.Error(err)
		}
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Error(err)
		}
	}
	ok, err := st.sealPack(ctx, pt, packSlot(day))
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Fatal("a seal over a pack a fold changed after its read was applied")
	}
	m, _, _, has := packRow(t, st, pt, packSlot(day))
	if has || fmt.Sprint(m) != "map[1:2 2:1 5:1]" {
		t.Fatalf("after the lost seal: map %v, seal %v; want map[1:2 2:1 5:1] and no seal", m, has)
	}
	if ok, err = st.sealPack(ctx, pt, packSlot(day)); err != nil || !ok {
		t.Fatalf("the next seal: %v, %v", ok, err)
	}
	m, e, _, has := packRow(t, st, pt, packSlot(day))
	if !has || len(m) != 0 || e.has != 1<<1|1<<2|1<<5 || e.n[1] != 2 || e.n[2] != 1 || e.n[5] != 1 {
		t.Fatalf("sealed: map %v, seal %+v", m, e)
	}
	// A seal with nothing in the map writes nothing.
	if ok, err = st.sealPack(ctx, pt, packSlot(day)); err != nil || ok {
		t.Fatalf("a seal of an empty map: %v, %v", ok, err)
	}
}

func ttlText(ttl *int) string {
	if ttl == nil {
		return "none"
	}
	return fmt.Sprint(*ttl, " s")
}
