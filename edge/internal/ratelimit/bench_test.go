package ratelimit

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// BenchmarkTake is the rate-limit check of one request: the in-process
// limiter, and the Redis-shared one (when VT_REDIS_URL is set), over 1,000
// keys.
func BenchmarkTake(b *testing.B) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "bench-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.Run("local", func(b *testing.B) {
		l := NewLocal()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !l.Take(ctx, keys[i%len(keys)], 1<<30, 1).Allowed {
				b.Fatal("denied")
			}
			i++
		}
	})
	b.Run("redis", func(b *testing.B) {
		url := os.Getenv("VT_REDIS_URL")
		if url == "" {
			b.Skip("VT_REDIS_URL is not set")
		}
		opts, err := redis.ParseURL(url)
		if err != nil {
			b.Fatal(err)
		}
		c := redis.NewClient(opts)
		defer c.Close()
		r := NewRedis(c, 1)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !r.Take(ctx, keys[i%len(keys)], 1<<30, 1).Allowed {
				b.Fatal("denied")
			}
			i++
		}
	})
}
