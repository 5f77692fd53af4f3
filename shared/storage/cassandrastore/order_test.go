package cassandrastore

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// inOrder sorts as a comparison sort does: on the grid, off it, with
// repeats, and spread wide.
func TestInOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	id := func(t *time.Time) time.Time { return *t }
	for round := range 500 {
		n := r.IntN(800)
		step := []time.Duration{time.Minute, time.Hour, 30 * time.Minute, 24 * time.Hour, 0}[r.IntN(5)]
		var xs []time.Time
		for range n {
			k := r.IntN(max(1, []int{n, 2 * n, 4*n + 100, 1 << 20}[r.IntN(4)]))
			x := base.Add(time.Duration(k) * step)
			if r.IntN(50) == 0 {
				x = x.Add(time.Duration(r.IntN(1000)) * time.Millisecond) // off the grid
			}
			xs = append(xs, x)
		}
		if round%3 == 0 { // distinct, as a map's keys are
			slices.SortFunc(xs, time.Time.Compare)
			xs = slices.CompactFunc(xs, time.Time.Equal)
			r.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
		}
		want := slices.Clone(xs)
		slices.SortFunc(want, time.Time.Compare)
		inOrder(xs, id, step)
		if !slices.EqualFunc(xs, want, time.Time.Equal) {
			t.Fatalf("round %d (step %v, %d): got %v, want %v", round, step, n, xs, want)
		}
	}
}

func BenchmarkInOrder(b *testing.B) {
	base := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	m := map[time.Time]bool{}
	for h := range 720 {
		m[base.Add(time.Duration(h)*time.Hour)] = true
	}
	for _, how := range []string{"grid", "compare"} {
		b.Run(how, func(b *testing.B) {
			xs := make([]time.Time, 0, 720)
			for range b.N {
				xs = xs[:0]
				for t := range m {
					xs = append(xs, t)
				}
				if how == "grid" {
					inOrder(xs, func(t *time.Time) time.Time { return *t }, time.Hour)
				} else {
					slices.SortFunc(xs, time.Time.Compare)
				}
			}
		})
	}
}
