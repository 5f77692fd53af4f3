package cassandrastore

import (
	"slices"
	"time"
)

// inOrder sorts xs by the time at gives each, earliest first. Slots of
// one resolution are distinct starts a whole number of steps d apart: each
// is put at its index, without comparisons (an hourly report's 720 slots
// were sorted twice by comparison, a tenth of its CPU). Anything else (a
// repeated time, one off the grid, a grid far wider than xs) is sorted by
// comparison.
func inOrder[T any](xs []T, at func(*T) time.Time, d time.Duration) {
	if len(xs) < 2 {
		return
	}
	byCompare := func() {
		slices.SortFunc(xs, func(a, b T) int { return at(&a).Compare(at(&b)) })
	}
	// In seconds: slots start on whole minutes, and nanoseconds since 1970
	// overflow past 2262.
	step := int64(d / time.Second)
	if step <= 0 || d%time.Second != 0 {
		byCompare()
		return
	}
	lo, hi := at(&xs[0]).Unix(), at(&xs[0]).Unix()
	for i := range xs {
		t := at(&xs[i])
		if t.Nanosecond() != 0 {
			byCompare()
			return
		}
		lo, hi = min(lo, t.Unix()), max(hi, t.Unix())
	}
	// hi-lo wraps below zero past int64 (time.Time holds seconds ±2^63).
	if span := hi - lo; span < 0 || span/step > int64(4*len(xs)+64) {
		byCompare()
		return
	}
	place := make([]int32, (hi-lo)/step+1) // index in xs + 1; 0: none
	for i := range xs {
		off := at(&xs[i]).Unix() - lo
		if off%step != 0 || place[off/step] != 0 {
			byCompare()
			return
		}
		place[off/step] = int32(i + 1)
	}
	sorted := make([]T, 0, len(xs))
	for _, k := range place {
		if k != 0 {
			sorted = append(sorted, xs[k-1])
		}
	}
	copy(xs, sorted)
}
