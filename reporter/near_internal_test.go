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

// at is a clock stopped at t, for claim.
func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// The checks' rules, one by one: a check is of one generation; a slow
// check never renews a copy a later one found stale, nor one begun
// before a reset; one hit only asks ahead; a clock gone back asks; the
// bound drops the checks whose window has ended first, and keeps the one
// being renewed.
func TestNearChecks(t *testing.T) {
	const every = time.Second
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var c nearChecks
	claim := func(key string, gen int64, now time.Time) int {
		v, _, _ := c.claim(key, gen, at(now), every)
		return v
	}
	if v := claim("k", 1, t0); v != checkNow {
		t.Fatalf("never checked: %d", v)
	}
	c.settle("k", 1, t0, c.epoch, true, every)
	if v := claim("k", 1, t0.Add(every/2)); v != sendCopy {
		t.Fatalf("within the window: %d", v)
	}
	if v := claim("k", 2, t0.Add(every/2)); v != checkNow {
		t.Fatalf("another generation's copy: %d", v)
	}
	if v := claim("k", 1, t0.Add(-time.Millisecond)); v != checkNow {
		t.Fatalf("the clock gone back: %d", v)
	}
	if v := claim("k", 1, t0.Add(every)); v != checkNow {
		t.Fatalf("the window ended: %d", v)
	}
	late := t0.Add(every * 3 / 4)
	v, asked, epoch := c.claim("k", 1, at(late), every)
	if v != checkAhead || !asked.Equal(late) || epoch != c.epoch {
		t.Fatalf("the last quarter: %d at %v", v, asked)
	}
	if v := claim("k", 1, late); v != sendCopy {
		t.Fatalf("the last quarter, one already asking: %d", v)
	}
	// The check asking ahead finds it stale; then one that asked before it
	// comes back current: the copy stays stale.
	c.settle("k", 1, late, c.epoch, false, every)
	c.settle("k", 1, late.Add(-time.Millisecond), c.epoch, true, every)
	if v := claim("k", 1, late.Add(time.Millisecond)); v != checkNow {
		t.Fatalf("stale, then an older check found it current: %d", v)
	}
	// A check begun before a reset (a registry change) is not recorded.
	_, asked, epoch = c.claim("r", 1, at(t0), every)
	c.reset()
	c.settle("r", 1, asked, epoch, true, every)
	if v := claim("r", 1, t0.Add(time.Millisecond)); v != checkNow {
		t.Fatalf("a check from before a reset: %d", v)
	}

	// The bound. Half the checks live, half ended: a new one drops the
	// ended and keeps the live. All live: a renewal keeps them, a new one
	// drops all.
	var b nearChecks
	for i := range maxNearChecks {
		when := t0.Add(-2 * every) // ended by t0 + every/2
		if i%2 == 0 {
			when = t0
		}
		b.settle(fmt.Sprint(i), 1, when, b.epoch, true, every)
	}
	now := t0.Add(every / 2)
	b.settle("new", 1, now, b.epoch, true, every)
	if len(b.m) != maxNearChecks/2+1 {
		t.Fatalf("a new check at the bound, half ended: %d kept", len(b.m))
	}
	for i := 0; i < maxNearChecks; i += 2 {
		if v, _, _ := b.claim(fmt.Sprint(i), 1, at(now), every); v != sendCopy {
			t.Fatalf("a live check dropped at the bound: %d", v)
		}
	}
	for i := range maxNearChecks/2 - 1 {
		b.settle(fmt.Sprint("more", i), 1, now, b.epoch, true, every)
	}
	b.settle("0", 1, now, b.epoch, true, every)
	if len(b.m) != maxNearChecks {
		t.Fatalf("a renewal at the bound left %d checks", len(b.m))
	}
	b.settle("newer", 1, now, b.epoch, true, every)
	if v, _, _ := b.claim("newer", 1, at(now), every); len(b.m) != 1 || v != sendCopy {
		t.Fatalf("a new check, all live at the bound: %d kept", len(b.m))
	}
}

// A registry change resets the checks after its bump: a check recorded
// while the bump was on its way (it asked Redis before the bump) does not
// keep a copy with the old name.
func TestRenameAsksAgain(t *testing.T) {
	const every = time.Minute
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := New(nil, zerolog.Nop()).WithNearCheckEvery(every)
	s.now = func() time.Time { return now }
	s.cache = &bumpHook{Local: rcache.NewLocal(1 << 20), hook: func() {
		_, asked, epoch := s.checks.claim("k", 1, s.now, every)
		s.checks.settle("k", 1, asked, epoch, true, every)
	}}
	s.changed(context.Background(), []string{"p"})
	if v, _, _ := s.checks.claim("k", 1, s.now, every); v != checkNow {
		t.Fatalf("a copy checked during the change's bump: %d, want asked again", v)
	}
}

// bumpHook is a cache that runs hook as a bump is made.
type bumpHook struct {
	*rcache.Local
	hook func()
}

func (b *bumpHook) Bump(ctx context.Context, ids ...string) error {
	b.hook()
	return b.Local.Bump(ctx, ids...)
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

	// 8 clients hitting a current copy through 10 windows: about one ask a
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
	if asks > 40 { // renewed at three quarters: 14 or so; 8 at each window's end would be over 100
		t.Fatalf("%d hits over %v asked Redis %d times", hits.Load(), 4000*every/400, asks)
	}
}

// cancelGens cancels the request asking it, then fails as a cancelled
// round trip does.
type cancelGens struct{ cancel context.CancelFunc }

func (g cancelGens) Held(ctx context.Context, _, _ string) (int64, time.Duration, error) {
	g.cancel()
	return 0, 0, ctx.Err()
}

// A request given up while it asks ahead records nothing: the copy stays
// current for the others until its window ends, not sent to Redis by
// every request after it.
func TestNearCancelledAskRecordsNothing(t *testing.T) {
	const every = time.Second
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := New(nil, zerolog.Nop()).WithNearCheckEvery(every)
	s.near = rcache.NewLocal(1 << 20)
	s.now = func() time.Time { return now }
	bg := context.Background()
	_ = s.near.SetBytes(bg, "k", sealEntry(0, []byte(`{"totalEvents":1}`)), time.Hour)
	_, asked, epoch := s.checks.claim("k", 0, s.now, every)
	s.checks.settle("k", 0, asked, epoch, true, every)

	now = now.Add(every * 3 / 4) // the last quarter: this hit asks ahead
	ctx, cancel := context.WithCancel(bg)
	s.gens = cancelGens{cancel}
	if _, ok := s.nearHit(ctx, "g", "k"); ok {
		t.Fatal("a copy sent on a failed ask")
	}
	if v, _, _ := s.checks.claim("k", 0, s.now, every); v != sendCopy {
		t.Fatalf("after a request given up: %d, want the copy sent within its window", v)
	}
}
