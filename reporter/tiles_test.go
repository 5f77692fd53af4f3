package reporter

import (
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/report/calendar"
	"github.com/volcanion/tracking/shared/storage"
)

// slotsOf lists the slots a tiling reads, with their resolutions.
func slotsOf(tl *tiling) (n map[storage.Res]int, starts map[time.Time]storage.Res) {
	n, starts = map[storage.Res]int{}, map[time.Time]storage.Res{}
	for i, r := range resolutions {
		for _, s := range tl[i] {
			for t := s.from; t.Before(s.to); t = t.Add(r.Duration()) {
				n[r]++
				starts[t] = r
			}
		}
	}
	return n, starts
}

// The slots of a zone's buckets: a day in Asia/Kolkata is ten slots, its
// hour one hour from half past, an hour in Asia/Kathmandu a quarter, a half hour
// and a quarter, a UTC day one slot.
func TestTilingOfZones(t *testing.T) {
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     map[storage.Res]int
	}{
		{"UTC day", day, day.Add(24 * time.Hour), map[storage.Res]int{storage.Day: 1}},
		{"Asia/Kolkata day", day.Add(-5*time.Hour - 30*time.Minute), day.Add(18*time.Hour + 30*time.Minute),
			map[storage.Res]int{storage.HalfHour: 2, storage.Hour: 5, storage.SixHours: 3}},
		{"Asia/Kolkata hour", day.Add(30 * time.Minute), day.Add(90 * time.Minute), map[storage.Res]int{storage.HalfPastHour: 1}},
		{"Asia/Kolkata two hours", day.Add(30 * time.Minute), day.Add(150 * time.Minute), map[storage.Res]int{storage.HalfHour: 2, storage.Hour: 1}},
		{"Asia/Kathmandu hour", day.Add(15 * time.Minute), day.Add(75 * time.Minute), map[storage.Res]int{storage.QuarterHour: 2, storage.HalfHour: 1}},
		{"Asia/Kathmandu day", day.Add(-5*time.Hour - 45*time.Minute), day.Add(18*time.Hour + 15*time.Minute),
			map[storage.Res]int{storage.QuarterHour: 2, storage.HalfHour: 1, storage.Hour: 5, storage.SixHours: 3}},
		{"UTC 6 hours", day.Add(6 * time.Hour), day.Add(12 * time.Hour), map[storage.Res]int{storage.SixHours: 1}},
		{"30 UTC days from a Wednesday", time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
			map[storage.Res]int{storage.Day: 9, storage.Week: 3}},
		{"a UTC week", time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC), map[storage.Res]int{storage.Week: 1}},
	} {
		tl := &tiling{}
		tl.add(c.from, c.to)
		checkSlots(t, c.name, tl, c.want)
	}
}

// checkSlots: tl reads the slots of want, by resolution.
func checkSlots(t *testing.T, name string, tl *tiling, want map[storage.Res]int) {
	t.Helper()
	n, _ := slotsOf(tl)
	if !maps.Equal(n, want) {
		t.Errorf("%s: %v, want %v", name, n, want)
	}
}

// Any range of whole minutes is tiled exactly: every minute in one slot,
// each slot aligned to its resolution, none past the range; and greedily:
// no run of slots of one resolution could be one slot of a coarser (an
// hour from half past only where it is the whole rest of the range).
func TestTilingCoversExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for range 2000 {
		from := base.Add(time.Duration(rng.IntN(5*24*60)) * time.Minute)
		checkTiling(t, from, from.Add(time.Duration(1+rng.IntN(3*24*60))*time.Minute))
	}
	for range 300 { // and months, across weeks
		from := base.Add(time.Duration(rng.IntN(20*24*60)) * time.Minute)
		checkTiling(t, from, from.Add(time.Duration(1+rng.IntN(40*24*60))*time.Minute))
	}
	// And every range on the quarter hours of 40 hours across a month's
	// end, where hours from half past fit now and then.
	base = time.Date(2026, 1, 30, 12, 0, 0, 0, time.UTC)
	for a := 0; a < 40*60; a += 15 {
		for b := a + 15; b <= 40*60; b += 15 {
			checkTiling(t, base.Add(time.Duration(a)*time.Minute), base.Add(time.Duration(b)*time.Minute))
		}
	}
}

func checkTiling(t *testing.T, from, to time.Time) {
	t.Helper()
	tl := &tiling{}
	tl.add(from, to)
	_, starts := slotsOf(tl)
	for t0 := from; t0.Before(to); {
		res, ok := starts[t0]
		if !ok {
			t.Fatalf("[%v, %v): no slot starts at %v", from, to, t0)
		}
		d := res.Duration()
		if !res.Slot(t0).Equal(t0) || t0.Add(d).After(to) {
			t.Fatalf("[%v, %v): slot %v of %v unaligned or past the end", from, to, t0, d)
		}
		if res == storage.HalfPastHour && !t0.Add(d).Equal(to) {
			t.Fatalf("[%v, %v): an hour from half past at %v is not the rest of the range", from, to, t0)
		}
		for _, r := range resolutions {
			whole := r != storage.HalfPastHour || t0.Add(r.Duration()).Equal(to)
			if r.Duration() > d && whole && r.Slot(t0).Equal(t0) && !t0.Add(r.Duration()).After(to) {
				t.Fatalf("[%v, %v): at %v a %v slot fits but a %v one is read", from, to, t0, r, d)
			}
		}
		delete(starts, t0)
		t0 = t0.Add(d)
	}
	if len(starts) != 0 {
		t.Fatalf("[%v, %v): slots outside the range: %v", from, to, starts)
	}
	checkCoalesced(t, tl, from, to)
}

// checkCoalesced: the coalesced tiling of tl reads every minute of [from,
// to) once, each slot aligned, its spans in order and apart; no more
// resolutions than tl, nor more than coalesceRows slots added for each
// it no longer reads.
func checkCoalesced(t *testing.T, tl *tiling, from, to time.Time) {
	t.Helper()
	co := tl.coalesced()
	_, starts := slotsOf(co)
	for t0 := from; t0.Before(to); {
		res, ok := starts[t0]
		if !ok {
			t.Fatalf("coalesced [%v, %v): no slot starts at %v", from, to, t0)
		}
		if !res.Slot(t0).Equal(t0) || t0.Add(res.Duration()).After(to) {
			t.Fatalf("coalesced [%v, %v): slot %v of %v unaligned or past the end", from, to, t0, res)
		}
		delete(starts, t0)
		t0 = t0.Add(res.Duration())
	}
	if len(starts) != 0 {
		t.Fatalf("coalesced [%v, %v): slots outside the range: %v", from, to, starts)
	}
	was, now := 0, 0
	for i := range resolutions {
		for k, s := range co[i] {
			if k > 0 && !co[i][k-1].to.Before(s.from) {
				t.Fatalf("coalesced [%v, %v): %v spans %v and %v touch or are out of order", from, to, resolutions[i], co[i][k-1], s)
			}
		}
		if len(tl[i]) > 0 {
			was++
		}
		if len(co[i]) > 0 {
			now++
		}
		if len(tl[i]) > 0 && len(co[i]) == 0 && resolutions[i].Duration() >= storage.Day.Duration() {
			t.Fatalf("coalesced [%v, %v): %v slots read as finer ones", from, to, resolutions[i])
		}
	}
	if now > was {
		t.Fatalf("coalesced [%v, %v): %d resolutions read, %d before", from, to, now, was)
	}
	if moved := was - now; co.slots() > tl.slots()+moved*coalesceRows {
		t.Fatalf("coalesced [%v, %v): %d slots, %d before, %d resolutions moved", from, to, co.slots(), tl.slots(), moved)
	}
}

// A month in Asia/Kolkata is read for its counts as its half hours (both
// ends: 48), days and weeks, in three resolutions, not five; one in UTC as
// before; two hours in Kolkata as four half hours.
func TestCoalescedTiling(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     map[storage.Res]int
	}{
		{"30 Kolkata days", time.Date(2026, 10, 30, 0, 0, 0, 0, kolkata), time.Date(2026, 11, 29, 0, 0, 0, 0, kolkata),
			map[storage.Res]int{storage.HalfHour: 48, storage.Day: 8, storage.Week: 3}},
		{"30 UTC days", time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
			map[storage.Res]int{storage.Day: 9, storage.Week: 3}},
		{"2 Kolkata hours", time.Date(2026, 11, 3, 6, 0, 0, 0, kolkata), time.Date(2026, 11, 3, 8, 0, 0, 0, kolkata),
			map[storage.Res]int{storage.HalfHour: 4}},
		{"a Kolkata hour", time.Date(2026, 11, 3, 6, 0, 0, 0, kolkata), time.Date(2026, 11, 3, 7, 0, 0, 0, kolkata),
			map[storage.Res]int{storage.HalfPastHour: 1}},
	} {
		tl := &tiling{}
		tl.add(c.from, c.to)
		checkSlots(t, c.name, tl.coalesced(), c.want)
	}
}

// TestReadNamesEverySpan: a report reads each resolution once, naming the
// tiling's spans (Only): 30 Kolkata days are one read of half hours, one
// of hours, one of six hours (31, 30 and 30 spans), and the read asks for exactly the slots the
// tiling reads.
func TestReadNamesEverySpan(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, kolkata)
	tl := &tiling{}
	for d := range 30 {
		tl.add(from.AddDate(0, 0, d), from.AddDate(0, 0, d+1))
	}
	spans := map[storage.Res]int{storage.HalfHour: 31, storage.Hour: 30, storage.SixHours: 30}
	for i, r := range resolutions {
		lo, hi, only, ok := tl.read(i)
		if ok != (spans[r] > 0) || spans[r] > 1 && len(only) != spans[r] || spans[r] == 1 && only != nil {
			t.Fatalf("%v: read %v, %d spans named; want %d spans", r, ok, len(only), spans[r])
		}
		if !ok {
			continue
		}
		n := 0
		for s := lo; s.Before(hi); s = s.Add(r.Duration()) {
			named := only == nil || only.Has(r, s)
			if named != tl.has(i, s) {
				t.Fatalf("%v: slot %v named %v, tiled %v", r, s, named, tl.has(i, s))
			}
			if named {
				n++
			}
		}
		if want := map[storage.Res]int{storage.HalfHour: 60, storage.Hour: 150, storage.SixHours: 90}[r]; n != want {
			t.Fatalf("%v: %d slots read, want %d", r, n, want)
		}
	}
}

// A range reaching back past the partner's retention: rows live until
// their slot's end plus it, so the buckets within the clocks' skew of the
// horizon are read for the range as for its series (the same slots), and
// no slot of the range's tiling crosses them; elsewhere the range keeps its
// coarse slots.
func TestWholeTilingSplitsAtTheHorizon(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 20, 0, 0, time.UTC)
	for _, c := range []struct {
		g, tz string
		ret   time.Duration
	}{
		{"hour", "UTC", 20*24*time.Hour + 5*time.Hour + 7*time.Minute},
		{"day", "UTC", 20*24*time.Hour + 5*time.Hour},
		{"day", "Asia/Kolkata", 12*24*time.Hour + 3*time.Hour},
		{"hour", "Asia/Kolkata", 12*24*time.Hour + 3*time.Hour},
		{"minute", "UTC", 23*time.Hour + 30*time.Minute},
	} {
		from := now.Add(-30 * 24 * time.Hour)
		if c.g == "minute" {
			from = now.Add(-24 * time.Hour)
		}
		pl, err := makePlan(from, now, c.g, c.tz, calendar.Day, 400*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := pl.list(); err != nil {
			t.Fatal(err)
		}
		before := pl.wholeTiling()
		pl.retain(c.ret, now)
		// The buckets within the clocks' skew of the horizon.
		h := now.Add(-c.ret)
		start, end := pl.buckets[pl.index(h.Add(-horizonSkew))], pl.to
		if k := pl.index(h.Add(horizonSkew)); k+1 < len(pl.buckets) {
			end = pl.buckets[k+1]
		}
		whole, series := pl.wholeTiling(), pl.seriesTiling()
		_, starts := slotsOf(whole) // still every minute of the range, once
		for x := pl.from.UTC(); x.Before(pl.to); {
			r, ok := starts[x]
			if !ok {
				t.Fatalf("%s in %s: no slot of the range starts at %v", c.g, c.tz, x)
			}
			delete(starts, x)
			x = x.Add(r.Duration())
		}
		if len(starts) > 0 {
			t.Fatalf("%s in %s: slots outside the range: %v", c.g, c.tz, starts)
		}
		own := 0
		for i, r := range resolutions {
			for _, s := range whole[i] {
				for x := s.from; x.Before(s.to); x = x.Add(r.Duration()) {
					e := x.Add(r.Duration())
					switch {
					case !e.After(start) || !x.Before(end):
					case !x.Before(start) && !e.After(end) && series.has(i, x):
						own++
					default:
						t.Fatalf("%s in %s: the range reads the %v slot %v across the bucket [%v, %v) of the horizon", c.g, c.tz, r, x, start, end)
					}
				}
			}
		}
		if own == 0 {
			t.Fatalf("%s in %s: the bucket of the horizon is not read", c.g, c.tz)
		}
		if whole.slots() > series.slots() || c.g == "hour" && whole.slots()*4 > series.slots() {
			t.Fatalf("%s in %s: the range reads %d slots, its series %d: the coarse slots are gone", c.g, c.tz, whole.slots(), series.slots())
		}
		if before.equal(whole) && c.g == "hour" {
			t.Fatalf("%s in %s: the horizon changed nothing", c.g, c.tz)
		}
		if !pl.countsTiling().equal(whole) {
			t.Fatalf("%s in %s: counts read the range coalesced across the horizon", c.g, c.tz)
		}
	}
}

// A range of one slot's length is tiled as the greedy walk tiles it, at
// every offset: add's shortcut for it takes no other slot.
func TestTilingOneSlotAsGreedy(t *testing.T) {
	base := time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC) // a Sunday
	for _, r := range resolutions {
		for off := time.Duration(0); off < 8*24*time.Hour; off += 15 * time.Minute {
			from := base.Add(off)
			to := from.Add(r.Duration())
			got, want := &tiling{}, &tiling{}
			got.add(from, to)
			want.greedy(from, to)
			if !got.equal(want) {
				t.Fatalf("%v from %v: %v, the greedy walk %v", r, from, *got, *want)
			}
		}
	}
}

// A series of buckets of one length, each one slot, is tiled as one span:
// the same tiling as adding each bucket, for every granularity in zones of
// every kind, over ranges across DST changes and not.
func TestSeriesTiledAsEachBucket(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham"}
	r := rand.New(rand.NewPCG(5, 6))
	lo := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	spanned := 0
	for _, tz := range zones {
		for range 200 {
			from := time.Unix(lo+r.Int64N(3*365*86400), 0)
			for _, g := range []string{"minute", "hour", "day", "week", "month"} {
				days := map[string]int{"minute": 1, "hour": 40, "day": 90, "week": 400, "month": 1000}[g]
				to := from.Add(time.Duration(1+r.Int64N(int64(days)*24*60)) * time.Minute)
				pl, err := makePlan(from, to, g, tz, calendar.Day, 2000*24*time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if err := pl.list(); err != nil {
					continue // too many buckets, or a zone's offset in seconds
				}
				each := &tiling{}
				for i, b := range pl.buckets {
					end := pl.to
					if i+1 < len(pl.buckets) {
						end = pl.buckets[i+1]
					}
					each.add(b, end)
				}
				if got := pl.tileSeries(); !sameTiling(got, each) {
					t.Fatalf("%s %s [%s, %s): tiled\n%v\nbucket by bucket\n%v", tz, g, from, to, got, each)
				}
				if pl.step > 0 {
					spanned++
				}
			}
		}
	}
	if spanned < 500 {
		t.Fatalf("only %d series of one step", spanned)
	}
}

func sameTiling(a, b *tiling) bool {
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for k := range a[i] {
			if !a[i][k].from.Equal(b[i][k].from) || !a[i][k].to.Equal(b[i][k].to) {
				return false
			}
		}
	}
	return true
}

// A tiling from the memo is the greedy one, whatever the tilings made from
// it before did to their own spans, and the memo stays bounded.
func TestTilingsMemo(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, kolkata)
	fresh := func(from, to time.Time) *tiling {
		tl := &tiling{}
		tl.greedy(storage.Minute.Slot(from), storage.Minute.Slot(to))
		return tl
	}
	for range 3 {
		for d := range 40 {
			from, to := day.AddDate(0, 0, d), day.AddDate(0, 0, d+1)
			got := &tiling{}
			got.add(from, to)
			if want := fresh(from, to); !sameTiling(got, want) {
				t.Fatalf("day %d: memo gave\n%v\ngreedy\n%v", d, got, want)
			}
			// The caller's tiling is its own: spans changed in place and
			// appended to do not reach the memo.
			for i := range got {
				for k := range got[i] {
					got[i][k].to = got[i][k].to.Add(time.Hour)
				}
				got[i] = append(got[i], span{day, day})
			}
		}
	}
	// Bounded: past maxTilings the memo starts again.
	for k := range maxTilings + 10 {
		from := day.Add(time.Duration(k) * time.Minute)
		(&tiling{}).add(from, from.Add(7*time.Minute))
	}
	tilings.mu.Lock()
	n := len(tilings.m)
	tilings.mu.Unlock()
	if n > maxTilings {
		t.Fatalf("%d tilings memoised, more than %d", n, maxTilings)
	}
}
