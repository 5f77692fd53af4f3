package rcache

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestLocal(t *testing.T) {
	ctx := context.Background()
	l := NewLocal(1000)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	type v struct{ A string }
	if err := l.Set(ctx, "k", v{"x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	var got v
	if ok, err := l.Get(ctx, "k", &got); !ok || err != nil || got.A != "x" {
		t.Fatalf("hit: %v %v %+v", ok, err, got)
	}
	// A hit is a copy.
	got.A = "changed"
	var again v
	l.Get(ctx, "k", &again)
	if again.A != "x" {
		t.Fatal("a hit shares the cached value")
	}
	now = now.Add(time.Minute)
	if ok, _ := l.Get(ctx, "k", &got); ok || l.Len() != 0 {
		t.Fatal("an expired entry was served or kept")
	}
	// Bounded: the least recently used go first.
	for i := range 100 {
		l.Set(ctx, fmt.Sprint("k", i), v{fmt.Sprintf("%040d", i)}, time.Hour)
		l.Get(ctx, "k0", &got) // k0 stays in use
	}
	if l.bytes > 1000 || l.Len() > 20 {
		t.Fatalf("%d bytes in %d entries, bound 1000", l.bytes, l.Len())
	}
	if ok, _ := l.Get(ctx, "k0", &got); !ok {
		t.Fatal("the most used entry was evicted")
	}
	if ok, _ := l.Get(ctx, "k1", &got); ok {
		t.Fatal("an old unused entry was kept")
	}
	// Larger than the whole cache: not kept, nothing evicted for it.
	n := l.Len()
	l.Set(ctx, "big", make([]byte, 2000), time.Hour)
	if ok, _ := l.Get(ctx, "big", &got); ok || l.Len() != n {
		t.Fatal("an entry larger than the cache was kept")
	}
}
