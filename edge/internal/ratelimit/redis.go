package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

var mFallback = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_ratelimit_fallback_total",
	Help: "Rate-limit decisions taken on the local per-edge share because Redis did not answer."})

// lease takes up to want tokens from the shared bucket: refill by elapsed
// time, grant min(want, tokens), answer {granted, tokens left, µs until
// `need` tokens are there}. Atomic in Redis; time is Redis's own clock.
var lease = redis.NewScript(`
local limit = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil then tokens = limit; at = now end
tokens = math.min(limit, tokens + (now - at) * limit / 1000000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], 2000)
local wait = 0
if need > tokens then wait = math.ceil((need - tokens) * 1000000 / limit) end
return {granted, math.floor(tokens), wait}
`)

// Redis shares each key's bucket among edges. An edge leases a chunk of
// tokens (a twentieth of the limit) and spends it locally, so the shared
// limit holds within a chunk per edge while most requests cost no round
// trip. Leased tokens not spent within a second are dropped.
//
// If Redis does not answer, each edge limits on its own to limit/edges (its
// share), so the total stays near the limit while Redis is down.
type Redis struct {
	c        *redis.Client
	edges    int
	fallback *Local
	timeout  time.Duration

	mu        sync.Mutex
	pools     map[string]*pool
	downUntil time.Time // after a failure, Redis is skipped for a second
}

type pool struct {
	tokens int
	at     time.Time
}

var (
	_ Limiter = (*Local)(nil)
	_ Limiter = (*Redis)(nil)
)

// NewRedis makes a shared limiter; edges is how many edges share the limit
// (for the fallback share).
func NewRedis(c *redis.Client, edges int) *Redis {
	if edges < 1 {
		edges = 1
	}
	return &Redis{c: c, edges: edges, fallback: NewLocal(), timeout: 200 * time.Millisecond, pools: map[string]*pool{}}
}

func (r *Redis) share(ctx context.Context, key string, limit, n int) Decision {
	mFallback.Inc()
	d := r.fallback.Take(ctx, key, max(1, limit/r.edges), n)
	d.Limit = limit
	return d
}

func (r *Redis) Take(ctx context.Context, key string, limit, n int) Decision {
	r.mu.Lock()
	if time.Now().Before(r.downUntil) {
		r.mu.Unlock()
		return r.share(ctx, key, limit, n)
	}
	p := r.pools[key]
	if p == nil || time.Since(p.at) > time.Second {
		p = &pool{at: time.Now()}
		r.pools[key] = p
	}
	if p.tokens >= n {
		p.tokens -= n
		left := p.tokens
		r.mu.Unlock()
		return Decision{Allowed: true, Limit: limit, Remaining: left}
	}
	want := max(n-p.tokens, max(1, limit/20)) // at least a chunk: a twentieth of the limit
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := lease.Run(ctx, r.c, []string{"trk:rl:" + key}, limit, want, n).Int64Slice()
	if err != nil || len(res) != 3 {
		r.mu.Lock()
		r.downUntil = time.Now().Add(time.Second) // spare the next requests the timeout
		r.mu.Unlock()
		return r.share(ctx, key, limit, n)
	}
	granted, left, wait := int(res[0]), int(res[1]), time.Duration(res[2])*time.Microsecond

	r.mu.Lock()
	defer r.mu.Unlock()
	p.tokens += granted
	p.at = time.Now()
	d := Decision{Limit: limit, Remaining: left + p.tokens}
	if p.tokens >= n {
		p.tokens -= n
		d.Allowed = true
		d.Remaining -= n
	} else {
		d.RetryAfter = wait
		if n > limit {
			d.RetryAfter = time.Second
		}
	}
	d.Reset = time.Duration(float64(limit-min(limit, left)) / float64(limit) * float64(time.Second))
	return d
}
