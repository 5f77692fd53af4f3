package rcache_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/rcache"
)

// open connects to the real Redis `make test` starts, under a key prefix of
// the test's own.
func open(t *testing.T) *rcache.Cache {
	t.Helper()
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	c, err := rcache.Open(context.Background(), url, "test:"+t.Name()+":")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Against the real Redis `make test` starts.
func TestCache(t *testing.T) {
	ctx := context.Background()
	c := open(t)
	type v struct{ N int }
	c.Delete(ctx, "a")
	var got v
	if ok, err := c.Get(ctx, "a", &got); ok || err != nil {
		t.Fatalf("miss: %v %v", ok, err)
	}
	if err := c.SetNX(ctx, "a", v{1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	c.SetNX(ctx, "a", v{2}, time.Minute) // must not overwrite
	if ok, _ := c.Get(ctx, "a", &got); !ok || got.N != 1 {
		t.Fatalf("after SetNX: %v %+v", ok, got)
	}
	c.Set(ctx, "a", v{3}, time.Minute)
	if ok, _ := c.Get(ctx, "a", &got); !ok || got.N != 3 {
		t.Fatalf("after Set: %+v", got)
	}
	c.Set(ctx, "short", v{4}, 50*time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := c.Get(ctx, "short", &got); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry outlived its TTL")
		}
	}
	var nilCache *rcache.Cache
	if ok, err := nilCache.Get(ctx, "a", &got); ok || err != nil || nilCache.Set(ctx, "a", 1, time.Second) != nil {
		t.Fatal("a disabled cache must miss and skip")
	}
	if _, err := rcache.Open(ctx, "redis://127.0.0.1:1/0", ""); err == nil {
		t.Fatal("no error for a Redis that is not there")
	}
}

// GetGenerational reads an entry and a generation in one round trip: 0
// for a generation never bumped, whether the entry is there or not.
func TestGetGenerational(t *testing.T) {
	ctx := context.Background()
	c := open(t)
	c.Delete(ctx, "e", rcache.KeyOfGeneration("id"))
	if gen, b, ok, err := c.GetGenerational(ctx, "id", "e"); gen != 0 || b != nil || ok || err != nil {
		t.Fatalf("nothing there: %d %q %v %v", gen, b, ok, err)
	}
	if err := c.SetBytes(ctx, "e", []byte("answer"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if gen, b, ok, err := c.GetGenerational(ctx, "id", "e"); gen != 0 || string(b) != "answer" || !ok || err != nil {
		t.Fatalf("entry, no generation: %d %q %v %v", gen, b, ok, err)
	}
	// Each bump gives a new generation, also after the last one lapsed: a
	// count starting again at 0 would come back to one an answer was sealed at.
	seen := map[int64]bool{0: true}
	for _, lapse := range []bool{false, false, true, false, true} {
		if lapse {
			c.Delete(ctx, rcache.KeyOfGeneration("id"))
		}
		if err := c.Bump(ctx, "id", "other"); err != nil {
			t.Fatal(err)
		}
		gen, b, ok, err := c.GetGenerational(ctx, "id", "e")
		if seen[gen] || string(b) != "answer" || !ok || err != nil {
			t.Fatalf("bumped (after a lapse: %v): %d %q %v %v; generations before: %v", lapse, gen, b, ok, err, seen)
		}
		seen[gen] = true
	}
	gen, _, _, _ := c.GetGenerational(ctx, "id", "e")
	c.Delete(ctx, "e")
	if g, b, ok, err := c.GetGenerational(ctx, "id", "e"); g != gen || b != nil || ok || err != nil {
		t.Fatalf("entry gone: %d (was %d) %q %v %v", g, gen, b, ok, err)
	}
	c.SetBytes(ctx, rcache.KeyOfGeneration("id"), []byte("not a number"), time.Minute)
	if _, _, _, err := c.GetGenerational(ctx, "id", "e"); err == nil {
		t.Fatal("a generation that is not a number read without error")
	}
}

// A versioned entry only moves forward, whatever order writers arrive in.
func TestVersionedOnlyMovesForward(t *testing.T) {
	ctx := context.Background()
	c := open(t)
	type rec struct{ State string }
	c.Delete(ctx, "k")
	write := func(v int64, state string, want bool) {
		t.Helper()
		ok, err := c.SetVersioned(ctx, "k", v, rec{state}, time.Minute)
		if err != nil || ok != want {
			t.Fatalf("set v%d: stored %v, %v; want stored %v", v, ok, err, want)
		}
	}
	write(4, "active", true)
	write(5, "revoked", true)
	write(4, "active", false) // a fill that read before the revoke
	write(5, "active?", false)
	var got rec
	v, ok, err := c.GetVersioned(ctx, "k", &got)
	if err != nil || !ok || v != 5 || got.State != "revoked" {
		t.Fatalf("got v%d %+v %v %v", v, got, ok, err)
	}
	// Concurrent writers of every version from 1 to 50: the last one stays.
	c.Delete(ctx, "k")
	done := make(chan struct{})
	for i := int64(50); i >= 1; i-- {
		go func(i int64) {
			c.SetVersioned(ctx, "k", i, rec{"x"}, time.Minute)
			done <- struct{}{}
		}(i)
	}
	for i := 0; i < 50; i++ {
		<-done
	}
	if v, _, _ := c.GetVersioned(ctx, "k", &got); v != 50 {
		t.Fatalf("after concurrent writers: v%d, want 50", v)
	}
}

// A Redis that stops answering is skipped for a second after a failure:
// callers get ErrDown at once instead of waiting on dials, then it is
// tried again.
func TestFailingRedisIsSkipped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx := context.Background()
	var v struct{}
	// Each read opens the break: Get (key lookups) and GetGenerational
	// (the reporter's only read).
	for name, first := range map[string]func(c *rcache.Cache) error{
		"Get":             func(c *rcache.Cache) error { _, err := c.Get(ctx, "k", &v); return err },
		"GetGenerational": func(c *rcache.Cache) error { _, _, _, err := c.GetGenerational(ctx, "id", "k"); return err },
	} {
		c, err := rcache.New("redis://"+addr, "t:")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := first(c); err == nil || errors.Is(err, rcache.ErrDown) {
			t.Fatalf("%s, the first call to a dead Redis: %v, want its own error", name, err)
		}
		for _, call := range []func() error{
			func() error { _, err := c.Get(ctx, "k", &v); return err },
			func() error { _, _, err := c.GetVersioned(ctx, "k", &v); return err },
			func() error { _, err := c.SetVersioned(ctx, "k", 1, v, time.Minute); return err },
			func() error { return c.Set(ctx, "k", v, time.Minute) },
			func() error { return c.Delete(ctx, "k") },
			func() error { _, _, _, err := c.GetGenerational(ctx, "id", "k"); return err },
			func() error { return c.Bump(ctx, "id") },
		} {
			if err := call(); !errors.Is(err, rcache.ErrDown) {
				t.Fatalf("after %s, within the break: %v, want ErrDown", name, err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := c.Get(ctx, "k", &v)
			if err != nil && !errors.Is(err, rcache.ErrDown) {
				break // asked Redis again
			}
			if time.Now().After(deadline) {
				t.Fatal("Redis was never tried again after the break")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
