package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/volcanion/tracking/shared/rcache"
)

// A near cache keeps, in the reporter's memory, copies of the answers it
// took from Redis or put there. A lookup then asks Redis only for the
// generation and whether the entry is still there (a few bytes) and sends
// its copy when that is the generation the copy was computed at and the
// entry is there: a 30-day hourly answer is 50 KB, and moving it out of
// Redis for every hit was most of the cost of one (and, with 8 clients on
// two cores, of the tail). Redis stays the judge: a bump (a late event)
// makes every copy stale; an entry gone (lapsed, evicted, or Redis
// restarted, when generations read 0 again) takes its copies with it; and
// when Redis cannot be asked no copy is sent. A copy also lapses on its
// own at its cachedAt plus the TTL of its range.

// A copy found current is then sent without asking Redis again for
// NearCheckEvery (WithNearCheckEvery): a hot answer costs one round trip
// per window, not one per request, asked by one request in the window's
// last quarter. Redis's round trips with 8 clients on two cores were 0.1
// ms at the median and 0.6-4.3 ms at p99, so a check on every hit put the
// scheduler's tail on every cached answer. The price is that a bump, an
// entry gone or Redis down reaches a copy checked within the window only
// when the window ends.

// generations reads a generation and an entry's time left (rcache.Cache).
type generations interface {
	Held(ctx context.Context, id, key string) (gen int64, left time.Duration, err error)
}

var _ generations = (*rcache.Cache)(nil)

// WithNearCache keeps up to maxBytes of answers in process, when the cache
// (WithCache) can read a generation alone; else, or for 0, none.
func (s *Service) WithNearCache(maxBytes int) *Service {
	s.near, s.gens = nil, nil
	if g, ok := s.cache.(generations); ok && maxBytes > 0 {
		s.near, s.gens = rcache.NewLocal(maxBytes), g
	}
	s.checks.reset()
	return s
}

// WithNearCheckEvery sends a copy found current in Redis without asking
// again for d (0, the default of New: ask on every hit).
func (s *Service) WithNearCheckEvery(d time.Duration) *Service {
	s.checkEvery = max(d, 0)
	s.checks.reset()
	return s
}

// nearChecks is when each copy (by key, and the generation it was
// computed at) was last found current in Redis, or found stale.
type nearChecks struct {
	mu sync.Mutex
	m  map[string]nearCheck
	// epoch counts resets: a check that began before one is not recorded.
	epoch uint64
}

type nearCheck struct {
	gen int64
	// at is when the check that set this asked Redis.
	at time.Time
	// stale: that check found the copy stale (or could not ask).
	stale bool
	// checking: a request is asking ahead of the window's end.
	checking bool
}

// maxNearChecks bounds the checks kept: past it those whose window has
// ended are dropped, and if that is not enough, all.
const maxNearChecks = 1 << 14

// reset forgets every check, and every check under way.
func (c *nearChecks) reset() {
	c.mu.Lock()
	c.m = nil
	c.epoch++
	c.mu.Unlock()
}

// The verdicts of claim.
const (
	checkNow   = iota // ask Redis before sending the copy
	sendCopy          // found current within the window: send it
	checkAhead        // send it, after asking Redis for the next window
)

// claim tells what a hit on key's copy of generation gen does, reading
// the clock under the lock (a time read before it could precede a check
// recorded meanwhile); asked and epoch are for settle. In the window's
// last quarter one request (and only one) asks ahead, so a hot copy's
// window is renewed before it ends and the requests around it never wait
// on Redis together (while Redis answers within a quarter of the window).
func (c *nearChecks) claim(key string, gen int64, clock func() time.Time, every time.Duration) (verdict int, asked time.Time, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := clock()
	k, ok := c.m[key]
	age := now.Sub(k.at)
	switch {
	case !ok || k.stale || k.gen != gen || now.Before(k.at) || age >= every:
		return checkNow, now, c.epoch
	case age >= every-every/4 && !k.checking:
		k.checking = true
		c.m[key] = k
		return checkAhead, now, c.epoch
	}
	return sendCopy, now, c.epoch
}

// settle records a check of key's copy of generation gen that asked at
// asked, in epoch: current or not. A check never overwrites one that
// asked later, so a slow check cannot renew a copy a later one found
// stale, nor one that began before a reset.
func (c *nearChecks) settle(key string, gen int64, asked time.Time, epoch uint64, current bool, every time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	k, ok := c.m[key]
	if ok && k.at.After(asked) {
		return
	}
	if !ok && len(c.m) >= maxNearChecks {
		for other, o := range c.m {
			if asked.Sub(o.at) >= every || o.stale {
				delete(c.m, other)
			}
		}
		if len(c.m) >= maxNearChecks {
			c.m = nil
		}
	}
	if c.m == nil {
		c.m = map[string]nearCheck{}
	}
	c.m[key] = nearCheck{gen: gen, at: asked, stale: !current}
}

// nearHit is the answer of the near copy of key, when its generation is
// genID's now and Redis still holds the entry.
func (s *Service) nearHit(ctx context.Context, genID, key string) (json.RawMessage, bool) {
	if s.near == nil {
		return nil, false
	}
	e, ok, _ := s.near.GetBytes(ctx, key)
	if !ok {
		return nil, false
	}
	at, answer, sound := openEntry(e)
	if !sound {
		return nil, false
	}
	window := s.checkEvery > 0
	var asked time.Time
	var epoch uint64
	if window {
		// The window runs from the ask (claim's clock): it never outlasts a bump.
		var verdict int
		if verdict, asked, epoch = s.checks.claim(key, at, s.now, s.checkEvery); verdict == sendCopy {
			return answer, true
		}
	}
	g, left, err := s.gens.Held(ctx, genID, key)
	current := err == nil && g == at && left > 0
	if window && ctx.Err() == nil { // a request given up says nothing of the copy
		s.checks.settle(key, at, asked, epoch, current, s.checkEvery)
	}
	if !current {
		return nil, false
	}
	return answer, true
}

// keepNear keeps a copy of the entry e (answer, its answer) read from Redis
// until the entry there lapses: its cachedAt plus the TTL it was stored
// with for a range ending at to.
func (s *Service) keepNear(ctx context.Context, key string, e, answer []byte, to time.Time) {
	if s.near == nil {
		return
	}
	at, ok := cachedAt(answer)
	if !ok {
		return
	}
	if left := at.Add(s.ttlAt(to, at)).Sub(s.now()); left > 0 {
		_ = s.near.SetBytes(ctx, key, bytes.Clone(e), left)
	}
}

// cachedAt is the cachedAt withCachedAt spliced at the end of an answer.
func cachedAt(answer []byte) (time.Time, bool) {
	const field = `,"cachedAt":"`
	i := bytes.LastIndex(answer, []byte(field))
	if i < 0 || !bytes.HasSuffix(answer, []byte(`"}`)) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(answer[i+len(field):len(answer)-2]))
	return t, err == nil
}
