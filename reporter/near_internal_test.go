package reporter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/rcache"
)

// The checks' rules, one by one: a check is of one generation; a slow
// check never renews a copy a later one found stale; one hit only asks
// ahead; a clock gone back asks; the bound drops the checks whose window
// has ended first, and keeps the one being renewed.
func TestNearChecks(t *testing.T) {
	const every = time.Second
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var c nearChecks
	if v := c.claim("k", 1, t0, every); v != checkNow {
		t.Fatalf("never checked: %d", v)
	}
	c.settle("k", 1, t0, true, every)
	if v := c.claim("k", 1, t0.Add(every/2), every); v != sendCopy {
		t.Fatalf("within the window: %d", v)
	}
	if v := c.claim("k", 2, t0.Add(every/2), every); v != checkNow {
		t.Fatalf("another generation's copy: %d", v)
	}
	if v := c.claim("k", 1, t0.Add(-time.Millisecond), every); v != checkNow {
		t.Fatalf("the clock gone back: %d", v)
	}
	if v := c.claim("k", 1, t0.Add(every), every); v != checkNow {
		t.Fatalf("the window ended: %d", v)
	}
	late := t0.Add(every * 3 / 4)
	if v := c.claim("k", 1, late, every); v != checkAhead {
		t.Fatalf("the last quarter: %d", v)
	}
	if v := c.claim("k", 1, late, every); v != sendCopy {
		t.Fatalf("the last quarter, one already asking: %d", v)
	}
	// The check asking ahead finds it stale; then one that asked before it
	// comes back current: the copy stays stale.
	c.settle("k", 1, late, false, every)
	c.settle("k", 1, late.Add(-time.Millisecond), true, every)
	if v := c.claim("k", 1, late.Add(time.Millisecond), every); v != checkNow {
		t.Fatalf("stale, then an older check found it current: %d", v)
	}

	// The bound: full of checks whose window ended, a new one drops them;
	// full of live ones, a renewal keeps them, a new one drops all.
	var b nearChecks
	for i := range maxNearChecks {
		b.settle(fmt.Sprint(i), 1, t0, true, every)
	}
	b.settle("0", 1, t0.Add(every/2), true, every)
	if len(b.m) != maxNearChecks {
		t.Fatalf("a renewal at the bound left %d checks", len(b.m))
	}
	b.settle("new", 1, t0.Add(every/2), true, every)
	if len(b.m) != 1 || b.claim("new", 1, t0.Add(every/2), every) != sendCopy {
		t.Fatalf("a new check, all live at the bound: %d kept", len(b.m))
	}
	for i := range maxNearChecks - 1 {
		b.settle(fmt.Sprint(i), 1, t0.Add(every/2), true, every)
	}
	b.settle("newer", 1, t0.Add(2*every), true, every)
	if len(b.m) != 1 || b.claim("newer", 1, t0.Add(2*every), every) != sendCopy {
		t.Fatalf("a new check, all ended at the bound: %d kept", len(b.m))
	}
}

// slowGens answers Held after moving the clock on by took, and counts
// the asks: a window counted from the answer would outlast a bump made
// while it was on its way.
type slowGens struct {
	mu   *sync.Mutex
	now  *time.Time
	took time.Duration
	gen  atomic.Int64
	asks atomic.Int64
}

func (g *slowGens) Held(context.Context, string, string) (int64, time.Duration, error) {
	g.asks.Add(1)
	g.mu.Lock()
	*g.now = g.now.Add(g.took)
	g.mu.Unlock()
	return g.gen.Load(), time.Hour, nil
}

// The window runs from the ask, not the answer; with many clients, one
// hit asks ahead of the window's end and the rest send the copy.
func TestNearWindowFromTheAsk(t *testing.T) {
	const every = time.Second
	var mu sync.Mutex
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	gens := &slowGens{mu: &mu, now: &now, took: every / 2}
	s := New(nil, zerolog.Nop()).WithNearCheckEvery(every)
	s.near, s.gens = rcache.NewLocal(1<<20), gens
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx := context.Background()
	_ = s.near.SetBytes(ctx, "k", sealEntry(0, []byte(`{"totalEvents":1}`)), time.Hour)
	if _, ok := s.nearHit(ctx, "g", "k"); !ok {
		t.Fatal("the copy is current")
	}
	// Asked at 0, answered at 0.5 s: the window ends at 1 s.
	mu.Lock()
	now = now.Add(every / 2)
	mu.Unlock()
	gens.took = 0
	gens.gen.Store(7) // a bump
	if _, ok := s.nearHit(ctx, "g", "k"); ok {
		t.Fatal("a copy sent a window after its ask, past a bump")
	}

	// 8 clients hitting a current copy through 5 windows: about one ask a
	// window, where a check on every hit would ask each time.
	gens.gen.Store(0)
	s.checks.reset()
	var hits atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				mu.Lock()
				now = now.Add(every / 400)
				mu.Unlock()
				if _, ok := s.nearHit(ctx, "g", "k"); !ok {
					t.Error("a current copy not sent")
					return
				}
				hits.Add(1)
			}
		}()
	}
	wg.Wait()
	asks := gens.asks.Load() - 1
	if asks > 20 {
		t.Fatalf("%d hits over %v asked Redis %d times", hits.Load(), 4000*every/400, asks)
	}
}
