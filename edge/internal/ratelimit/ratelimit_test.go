package ratelimit

import (
	"context"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestLocal(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLocal()
	l.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if d := l.Take(ctx, "k", 10, 1); !d.Allowed || d.Remaining != 9-i {
			t.Fatalf("take %d: %+v", i, d)
		}
	}
	d := l.Take(ctx, "k", 10, 1)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond || d.Reset != time.Second {
		t.Fatalf("over the limit: %+v", d)
	}
	if d := l.Take(ctx, "other", 10, 1); !d.Allowed {
		t.Fatal("keys share a bucket")
	}
	now = now.Add(100 * time.Millisecond)
	if d := l.Take(ctx, "k", 10, 1); !d.Allowed {
		t.Fatalf("after the refill: %+v", d)
	}
	// A bulk counts its events; one larger than a second's worth never fits.
	now = now.Add(time.Second)
	if d := l.Take(ctx, "k", 10, 7); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("bulk of 7: %+v", d)
	}
	if d := l.Take(ctx, "k", 10, 11); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("bulk of 11: %+v", d)
	}
}

// Three edges, each with its own Redis connection, share one key's limit.
func TestRedisShared(t *testing.T) {
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	opts, _ := redis.ParseURL(url)
	key := "test-" + time.Now().Format("150405.000000")
	const limit, seconds = 200, 5
	var allowed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(seconds * time.Second)
	for e := 0; e < 3; e++ {
		c := redis.NewClient(opts)
		defer c.Close()
		r := NewRedis(c, 3)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if r.Take(context.Background(), key, limit, 1).Allowed {
						allowed.Add(1)
					} else {
						time.Sleep(time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
	want := float64(limit*seconds + limit) // the refill plus one full bucket at the start
	got := float64(allowed.Load())
	t.Logf("3 edges allowed %v events against a limit of %d/s over %ds (ideal %v)", got, limit, seconds, want)
	if math.Abs(got-want)/want > 0.10 {
		t.Fatalf("allowed %v, want %v ±10%%", got, want)
	}
}

// With Redis down, an edge limits alone to its share: limit / edges.
func TestRedisDownFallsBackToShare(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	r := NewRedis(c, 4)
	now := time.Now()
	r.fallback.now = func() time.Time { return now } // no refill during the test
	start := time.Now()
	n := 0
	for i := 0; i < 100; i++ {
		d := r.Take(context.Background(), "k", 100, 1)
		if d.Allowed {
			n++
		}
		if d.Limit != 100 {
			t.Fatalf("limit header would say %d", d.Limit)
		}
	}
	if n != 25 {
		t.Fatalf("allowed %d with Redis down, want the share 100/4 = 25", n)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("100 decisions with Redis down took %v: each waited for Redis", took)
	}
}
