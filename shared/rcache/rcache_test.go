package rcache_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/rcache"
)

// Against the real Redis `make test` starts.
func TestCache(t *testing.T) {
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	ctx := context.Background()
	c, err := rcache.Open(ctx, url, "test:"+t.Name()+":")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	time.Sleep(120 * time.Millisecond)
	if ok, _ := c.Get(ctx, "short", &got); ok {
		t.Fatal("entry outlived its TTL")
	}
	var nilCache *rcache.Cache
	if ok, err := nilCache.Get(ctx, "a", &got); ok || err != nil || nilCache.Set(ctx, "a", 1, time.Second) != nil {
		t.Fatal("a disabled cache must miss and skip")
	}
	if _, err := rcache.Open(ctx, "redis://127.0.0.1:1/0", ""); err == nil {
		t.Fatal("no error for a Redis that is not there")
	}
}

// A versioned entry only moves forward, whatever order writers arrive in.
func TestVersionedOnlyMovesForward(t *testing.T) {
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	ctx := context.Background()
	c, err := rcache.Open(ctx, url, "test:"+t.Name()+":")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
