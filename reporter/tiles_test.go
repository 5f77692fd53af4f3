package reporter

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/storage"
)

// slotsOf lists the slots a tiling reads, with their resolutions.
func slotsOf(tl *tiling) (n map[storage.Res]int, starts map[time.Time]time.Duration) {
	n, starts = map[storage.Res]int{}, map[time.Time]time.Duration{}
	for i, r := range resolutions {
		for _, s := range tl[i] {
			for t := s.from; t.Before(s.to); t = t.Add(r.Duration()) {
				n[r]++
				starts[t] = r.Duration()
			}
		}
	}
	return n, starts
}

// The slots of a zone's buckets: a day in Asia/Kolkata is ten slots, its
// hour two half hours, an hour in Asia/Kathmandu a quarter, a half hour
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
		{"Asia/Kolkata hour", day.Add(30 * time.Minute), day.Add(90 * time.Minute), map[storage.Res]int{storage.HalfHour: 2}},
		{"Asia/Kathmandu hour", day.Add(15 * time.Minute), day.Add(75 * time.Minute), map[storage.Res]int{storage.QuarterHour: 2, storage.HalfHour: 1}},
		{"Asia/Kathmandu day", day.Add(-5*time.Hour - 45*time.Minute), day.Add(18*time.Hour + 15*time.Minute),
			map[storage.Res]int{storage.QuarterHour: 2, storage.HalfHour: 1, storage.Hour: 5, storage.SixHours: 3}},
		{"UTC 6 hours", day.Add(6 * time.Hour), day.Add(12 * time.Hour), map[storage.Res]int{storage.SixHours: 1}},
	} {
		tl := &tiling{}
		tl.add(c.from, c.to)
		n, _ := slotsOf(tl)
		if len(n) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, n, c.want)
			continue
		}
		for r, k := range c.want {
			if n[r] != k {
				t.Errorf("%s: %v, want %v", c.name, n, c.want)
			}
		}
	}
}

// Any range of whole minutes is tiled exactly: every minute in one slot,
// each slot aligned to its resolution, none past the range; and greedily:
// no run of slots of one resolution could be one slot of a coarser.
func TestTilingCoversExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for range 2000 {
		from := base.Add(time.Duration(rng.IntN(5*24*60)) * time.Minute)
		to := from.Add(time.Duration(1+rng.IntN(3*24*60)) * time.Minute)
		tl := &tiling{}
		tl.add(from, to)
		_, starts := slotsOf(tl)
		for t0 := from; t0.Before(to); {
			d, ok := starts[t0]
			if !ok {
				t.Fatalf("[%v, %v): no slot starts at %v", from, to, t0)
			}
			if !t0.Truncate(d).Equal(t0) || t0.Add(d).After(to) {
				t.Fatalf("[%v, %v): slot %v of %v unaligned or past the end", from, to, t0, d)
			}
			for _, r := range resolutions {
				if r.Duration() > d && r.Slot(t0).Equal(t0) && !t0.Add(r.Duration()).After(to) {
					t.Fatalf("[%v, %v): at %v a %v slot fits but a %v one is read", from, to, t0, r, d)
				}
			}
			delete(starts, t0)
			t0 = t0.Add(d)
		}
		if len(starts) != 0 {
			t.Fatalf("[%v, %v): slots outside the range: %v", from, to, starts)
		}
	}
}

// Counts of hours join across a day's gap (one read of the month's hours
// for the evenings of 30 Kolkata days), sketches do not, nor do counts of
// finer slots (a partition a day: no round trip saved); every slot the
// tiling reads is inside a read.
func TestReadsJoinSmallRows(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, kolkata)
	tl := &tiling{}
	for d := range 30 {
		tl.add(from.AddDate(0, 0, d), from.AddDate(0, 0, d+1))
	}
	idx := func(r storage.Res) int {
		for i, x := range resolutions {
			if x == r {
				return i
			}
		}
		t.Fatalf("no %v", r)
		return -1
	}
	for _, c := range []struct {
		res          storage.Res
		small, large int // reads of counts, of sketches
	}{{storage.Hour, 1, 30}, {storage.SixHours, 1, 1}, {storage.HalfHour, 31, 31}} {
		i := idx(c.res)
		small, large := tl.reads(i, true), tl.reads(i, false)
		if len(small) != c.small || len(large) != c.large {
			t.Errorf("%v: %d reads of counts, %d of sketches; want %d and %d", c.res, len(small), len(large), c.small, c.large)
		}
		for _, reads := range [][]span{small, large} {
			for _, s := range tl[i] {
				in := false
				for _, r := range reads {
					in = in || !s.from.Before(r.from) && !s.to.After(r.to)
				}
				if !in {
					t.Fatalf("%v: span %v not read", c.res, s)
				}
			}
		}
	}
}
