// Package ratelimit limits events per API key with token buckets: capacity
// = one second of the limit, refilled continuously. Local keeps buckets in
// the process (the embedded default); Redis shares one bucket per key among
// all edges, leasing tokens in chunks so most requests need no round trip.
package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// Decision is the answer to a Take.
type Decision struct {
	Allowed    bool
	Limit      int           // events per second
	Remaining  int           // tokens left (approximate with Redis)
	Reset      time.Duration // until the bucket is full again
	RetryAfter time.Duration // when denied: until n tokens are there
}

// Limiter takes n tokens from key's bucket of limit events per second.
type Limiter interface {
	Take(ctx context.Context, key string, limit, n int) Decision
}

type bucket struct {
	tokens float64
	at     time.Time
}

// refill brings b to now and returns it.
func (b *bucket) refill(limit int, now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = float64(limit), now
		return
	}
	b.tokens = math.Min(float64(limit), b.tokens+now.Sub(b.at).Seconds()*float64(limit))
	b.at = now
}

func decide(b *bucket, limit, n int) Decision {
	d := Decision{Limit: limit}
	if float64(n) <= b.tokens {
		b.tokens -= float64(n)
		d.Allowed = true
	} else {
		need := float64(min(n, limit)) - b.tokens
		d.RetryAfter = time.Duration(need / float64(limit) * float64(time.Second))
		if n > limit {
			d.RetryAfter = time.Second // more than a second's worth never fits: the client must split it
		}
	}
	d.Remaining = int(b.tokens)
	d.Reset = time.Duration((float64(limit) - b.tokens) / float64(limit) * float64(time.Second))
	return d
}

// Local is an in-process limiter.
type Local struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	now     func() time.Time
	swept   time.Time
}

// NewLocal makes an in-process limiter.
func NewLocal() *Local { return &Local{buckets: map[string]*bucket{}, now: time.Now} }

func (l *Local) Take(_ context.Context, key string, limit, n int) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.swept) > time.Minute { // forget idle keys: a full bucket needs no memory
		for k, b := range l.buckets {
			if now.Sub(b.at) > time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{}
		l.buckets[key] = b
	}
	b.refill(limit, now)
	return decide(b, limit, n)
}
