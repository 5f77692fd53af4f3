package signing

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Nonces remembers nonces: Fresh records n and reports whether it was new,
// atomically (two concurrent requests with one nonce: exactly one is fresh).
type Nonces interface {
	Fresh(ctx context.Context, n string, ttl time.Duration) (bool, error)
}

// LocalNonces is the in-process store of the embedded default.
type LocalNonces struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	swept time.Time
}

// NewLocalNonces makes an in-process nonce store.
func NewLocalNonces() *LocalNonces { return &LocalNonces{seen: map[string]time.Time{}} }

func (l *LocalNonces) Fresh(_ context.Context, n string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.swept) > time.Minute {
		for k, exp := range l.seen {
			if now.After(exp) {
				delete(l.seen, k)
			}
		}
		l.swept = now
	}
	if exp, ok := l.seen[n]; ok && now.Before(exp) {
		return false, nil
	}
	l.seen[n] = now.Add(ttl)
	return true, nil
}

// RedisNonces shares nonces among edges: SET NX with a TTL.
type RedisNonces struct{ C *redis.Client }

func (r RedisNonces) Fresh(ctx context.Context, n string, ttl time.Duration) (bool, error) {
	return r.C.SetNX(ctx, "trk:nonce:"+n, 1, ttl).Result()
}
