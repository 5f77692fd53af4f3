package reporter

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/report/calendar"
	"github.com/volcanion/tracking/shared/storage"
)

// refAdd is tiling.add as it was before the memo (fast path, then greedy
// straight into tl).
func refAdd(tl *tiling, from, to time.Time) {
	t, end := storage.Minute.Slot(from), storage.Minute.Slot(to)
	if d := end.Sub(t); d > 0 {
		for i, r := range resolutions {
			if r.Duration() == d && aligned(t, r) {
				tl.merge(i, span{t, end})
				return
			}
		}
	}
	tl.greedy(t, end)
}

// The memoised add gives what the old add gave, for sequences
// of adds into one tiling (series bucket by bucket, whole range split at a
// horizon), in many zones, from several goroutines at once (the memo is
// cleared under them more than once), and callers' later changes to their
// tilings never reach another caller.
func TestMemoSameAsFresh(t *testing.T) {
	zones := []string{"UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham", "Europe/Berlin"}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			lo := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
			for range 600 {
				tz := zones[r.IntN(len(zones))]
				from := time.Unix(lo+r.Int64N(3*365*86400), 0)
				g := []string{"hour", "day", "week", "month"}[r.IntN(4)]
				days := map[string]int{"hour": 10, "day": 60, "week": 200, "month": 400}[g]
				to := from.Add(time.Duration(1+r.Int64N(int64(days)*24*60)) * time.Minute)
				pl, err := makePlan(from, to, g, tz, calendar.Day, 2000*24*time.Hour)
				if err != nil {
					continue
				}
				if err := pl.list(); err != nil {
					continue
				}
				got, want := &tiling{}, &tiling{}
				for i, b := range pl.buckets {
					end := pl.to
					if i+1 < len(pl.buckets) {
						end = pl.buckets[i+1]
					}
					got.add(b, end)
					refAdd(want, b, end)
				}
				// A horizon inside: the whole range in three pieces.
				k := r.IntN(len(pl.buckets))
				got.add(pl.from, pl.buckets[k])
				refAdd(want, pl.from, pl.buckets[k])
				got.add(pl.buckets[k], pl.to)
				refAdd(want, pl.buckets[k], pl.to)
				if !sameTiling(got, want) {
					select {
					case errs <- tz + " " + g + " " + from.String() + " " + to.String():
					default:
					}
					return
				}
				// Scribble over what this caller got: no one else may see it.
				for i := range got {
					for j := range got[i] {
						got[i][j].to = got[i][j].to.Add(-time.Minute)
					}
				}
				// unions from plan copies: one slice, same as made fresh.
				a, b := pl, pl
				ua, ub := a.unions(), b.unions()
				fresh := pl.makeUnions()
				if len(ua) != len(fresh) || (len(ua) > 0 && &ua[0] != &ub[0]) {
					select {
					case errs <- "unions not shared or wrong length":
					default:
					}
					return
				}
				for i := range fresh {
					if len(fresh[i]) != len(ua[i]) {
						select {
						case errs <- "unions differ":
						default:
						}
						return
					}
					for j := range fresh[i] {
						if fresh[i][j] != ua[i][j] {
							select {
							case errs <- "unions differ":
							default:
							}
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
