package cassandrastore

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// inOrder against a comparison sort where the grid path's
// arithmetic is stressed: times before 1970 and before year 1, steps not a
// divisor of a day, slots on a grid with a phase (half past), and a span
// whose seconds overflow int64 when subtracted.
func TestInOrderEdges(t *testing.T) {
	id := func(t *time.Time) time.Time { return *t }
	check := func(name string, xs []time.Time, d time.Duration) {
		t.Helper()
		want := slices.Clone(xs)
		slices.SortFunc(want, time.Time.Compare)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: inOrder panicked: %v", name, r)
				}
			}()
			inOrder(xs, id, d)
			if !slices.EqualFunc(xs, want, time.Time.Equal) {
				t.Errorf("%s: got %v, want %v", name, xs, want)
			}
		}()
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, base := range []time.Time{
		time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-400, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 0, 30, 0, 0, time.UTC), // half past
	} {
		for _, d := range []time.Duration{time.Minute, 7 * time.Minute, time.Hour, 7 * 24 * time.Hour, 1500 * time.Millisecond} {
			var xs []time.Time
			for k := range r.Perm(300) {
				xs = append(xs, base.Add(time.Duration(k)*d))
			}
			r.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
			check(base.String()+" "+d.String(), xs, d)
		}
	}
	// Seconds since 1970 that overflow int64 when subtracted (hi - lo):
	// time.Time holds them; the grid path must not panic or misplace.
	far := []time.Time{time.Unix(5e18, 0), time.Unix(-5e18, 0)}
	check("overflowing span", far, time.Minute)
	check("overflowing span, three", []time.Time{time.Unix(5e18, 0), time.Unix(0, 0), time.Unix(-5e18, 0)}, time.Hour)
}
