package reporter

import (
	"bytes"
	"context"
	"encoding/json"
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
	return s
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
	g, left, err := s.gens.Held(ctx, genID, key)
	if err != nil || g != at || left <= 0 {
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
