// Package rcache is the Redis cache shared by the processes of one
// deployment (key lookups, partner snapshots, report answers). A nil *Cache
// is a disabled cache: every Get misses and every write is skipped, so the
// embedded default runs without Redis. Redis errors are returned for the
// caller to log and bypass: a cache outage never fails a request.
package rcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

var mOps = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_redis_cache_operations_total",
	Help: "Redis cache operations by kind (get, set) and result (hit, miss, ok, error)."}, []string{"op", "result"})

// Cache is a JSON cache over Redis.
type Cache struct {
	c      *redis.Client
	prefix string
	// downUntil (unix nanos): Redis failed; every operation fails fast with
	// ErrDown until then, so an outage costs callers nothing but the miss.
	downUntil atomic.Int64
}

// ErrDown: Redis failed less than a second ago; not asked again yet.
var ErrDown = errors.New("rcache: redis failed recently; skipped")

// breakFor is how long a failure keeps Redis out of the path.
const breakFor = time.Second

func (c *Cache) down() bool { return time.Now().UnixNano() < c.downUntil.Load() }

// check notes a failure; redis.Nil (a miss) is none.
func (c *Cache) check(err error) error {
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) {
		c.downUntil.Store(time.Now().Add(breakFor).UnixNano())
	}
	return err
}

// quiet drops go-redis's own log lines: every error reaches the caller,
// which logs it once, in our format.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quiet{}) }

// New makes a cache for a redis:// URL without connecting yet; the client
// reconnects on its own, so a service may start while Redis is down.
func New(url, prefix string) (*Cache, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("rcache: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, 500*time.Millisecond, 500*time.Millisecond
	return &Cache{c: redis.NewClient(opts), prefix: prefix}, nil
}

// Open is New, then a check that Redis answers.
func Open(ctx context.Context, url, prefix string) (*Cache, error) {
	c, err := New(url, prefix)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Ping checks Redis answers.
func (c *Cache) Ping(ctx context.Context) error {
	if err := c.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("rcache: ping %s: %w", c.c.Options().Addr, err)
	}
	return nil
}

// Client is the underlying client (nil for a disabled cache).
func (c *Cache) Client() *redis.Client {
	if c == nil {
		return nil
	}
	return c.c
}

// Close closes the connection.
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	return c.c.Close()
}

// Get decodes the value at key into v; ok is false on a miss.
func (c *Cache) Get(ctx context.Context, key string, v any) (ok bool, err error) {
	b, ok, err := c.GetBytes(ctx, key)
	if !ok || err != nil {
		return ok, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, err
	}
	return true, nil
}

// GetBytes reads the value at key as stored (for a value kept as the
// answer's own bytes); ok is false on a miss.
func (c *Cache) GetBytes(ctx context.Context, key string) (b []byte, ok bool, err error) {
	if c == nil {
		return nil, false, nil
	}
	if c.down() {
		return nil, false, ErrDown
	}
	b, err = c.c.Get(ctx, c.prefix+key).Bytes()
	c.check(err)
	switch {
	case errors.Is(err, redis.Nil):
		mOps.WithLabelValues("get", "miss").Inc()
		return nil, false, nil
	case err != nil:
		mOps.WithLabelValues("get", "error").Inc()
		return nil, false, err
	}
	mOps.WithLabelValues("get", "hit").Inc()
	return b, true, nil
}

// SetBytes stores b at key for ttl, as it is.
func (c *Cache) SetBytes(ctx context.Context, key string, b []byte, ttl time.Duration) error {
	return c.setBytes(ctx, key, b, ttl, false)
}

// Set stores v at key for ttl.
func (c *Cache) Set(ctx context.Context, key string, v any, ttl time.Duration) error {
	return c.set(ctx, key, v, ttl, false)
}

// SetNX stores v at key only if the key is absent: a filler that read its
// value earlier never overwrites a newer one.
func (c *Cache) SetNX(ctx context.Context, key string, v any, ttl time.Duration) error {
	return c.set(ctx, key, v, ttl, true)
}

func (c *Cache) set(ctx context.Context, key string, v any, ttl time.Duration, nx bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.setBytes(ctx, key, b, ttl, nx)
}

func (c *Cache) setBytes(ctx context.Context, key string, b []byte, ttl time.Duration, nx bool) error {
	if c == nil {
		return nil
	}
	if c.down() {
		return ErrDown
	}
	var err error
	if nx {
		err = c.c.SetNX(ctx, c.prefix+key, b, ttl).Err()
	} else {
		err = c.c.Set(ctx, c.prefix+key, b, ttl).Err()
	}
	if c.check(err) != nil {
		mOps.WithLabelValues("set", "error").Inc()
		return err
	}
	mOps.WithLabelValues("set", "ok").Inc()
	return nil
}

// versioned is the head of a versioned entry: the record's version, zero
// padded so Lua compares it as a number, then the JSON.
const versionDigits = 20

// setNewer writes a versioned entry only when Redis holds none or an older
// version, atomically, so a writer that read its record before a change
// can never put back what the change replaced.
var setNewer = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.sub(cur, 1, 20))
  if v and v >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// SetVersioned stores v at key, tagged with version, unless Redis holds the
// same or a newer version. stored is false when it was not written.
func (c *Cache) SetVersioned(ctx context.Context, key string, version int64, v any, ttl time.Duration) (stored bool, err error) {
	if c == nil {
		return false, nil
	}
	if c.down() {
		return false, ErrDown
	}
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	val := fmt.Sprintf("%0*d", versionDigits, version) + string(b)
	n, err := setNewer.Run(ctx, c.c, []string{c.prefix + key}, version, val, ttl.Milliseconds()).Int()
	if c.check(err) != nil {
		mOps.WithLabelValues("set", "error").Inc()
		return false, err
	}
	mOps.WithLabelValues("set", "ok").Inc()
	return n == 1, nil
}

// GetVersioned decodes a SetVersioned entry into v and returns its version;
// ok is false on a miss.
func (c *Cache) GetVersioned(ctx context.Context, key string, v any) (version int64, ok bool, err error) {
	if c == nil {
		return 0, false, nil
	}
	if c.down() {
		return 0, false, ErrDown
	}
	b, err := c.c.Get(ctx, c.prefix+key).Bytes()
	c.check(err)
	switch {
	case errors.Is(err, redis.Nil):
		mOps.WithLabelValues("get", "miss").Inc()
		return 0, false, nil
	case err != nil:
		mOps.WithLabelValues("get", "error").Inc()
		return 0, false, err
	}
	if len(b) < versionDigits {
		mOps.WithLabelValues("get", "error").Inc()
		return 0, false, fmt.Errorf("rcache: %s: not a versioned entry", key)
	}
	version, err = strconv.ParseInt(string(b[:versionDigits]), 10, 64)
	if err == nil {
		err = json.Unmarshal(b[versionDigits:], v)
	}
	if err != nil {
		mOps.WithLabelValues("get", "error").Inc()
		return 0, false, err
	}
	mOps.WithLabelValues("get", "hit").Inc()
	return version, true, nil
}

// Delete removes keys.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if c == nil || len(keys) == 0 {
		return nil
	}
	if c.down() {
		return ErrDown
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = c.prefix + k
	}
	return c.check(c.c.Del(ctx, full...).Err())
}

// Keys of the shared auth entries (versioned: SetVersioned, GetVersioned).
func KeyOfAPIKey(id string) string  { return "vkey:" + id }
func KeyOfPartner(id string) string { return "vpartner:" + id }

// Generations: a value per partner and per sub-system that workers change
// when they store events into the closed past (older than an hour), so a
// report cached for a closed range is cached with the generation it was
// computed at, and a late event makes the next request compute it anew.
// Generations are only compared for equality. A bump sets a fresh random
// value, never a count: a counter that lapsed and counted up again from 0
// would come back to a value an answer still in the cache was sealed with,
// and that answer would hide the late event.

// KeyOfGeneration is the generation of a partner or sub-system id.
func KeyOfGeneration(id string) string { return "vgen:" + id }

// GenerationTTL keeps a generation longer than any answer cached with it
// (reporter.ClosedTTL): when it lapses and reads 0 again, the answers
// sealed at the 0 it had before its first bump have lapsed too.
const GenerationTTL = time.Hour

// newGeneration is a generation no earlier bump gave, but by a chance of
// one in 2^63 per pair.
func newGeneration() int64 { return 1 + rand.Int64N(math.MaxInt64-1) }

// Bump gives ids new generations.
func (c *Cache) Bump(ctx context.Context, ids ...string) error {
	if c == nil || len(ids) == 0 {
		return nil
	}
	if c.down() {
		return ErrDown
	}
	_, err := c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Set(ctx, c.prefix+KeyOfGeneration(id), newGeneration(), GenerationTTL)
		}
		return nil
	})
	return c.check(err)
}

// Held reads, in one round trip, the generation of id (0 when never
// bumped) and how long the entry at key has left (0 when it is gone; a key
// kept for ever counts as an hour): a copy of an answer kept in process
// (the reporter's near cache) is checked against both, with no transfer of
// the answer. Redis stays the judge: a copy whose entry is gone (a
// restart, an eviction) is not sent, though its generation may read 0
// again.
func (c *Cache) Held(ctx context.Context, id, key string) (gen int64, left time.Duration, err error) {
	if c == nil {
		return 0, 0, errors.New("rcache: no cache")
	}
	if c.down() {
		return 0, 0, ErrDown
	}
	var g *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err = c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		g = p.Get(ctx, c.prefix+KeyOfGeneration(id))
		ttl = p.PTTL(ctx, c.prefix+key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, c.check(fmt.Errorf("rcache: generation of %s: %w", id, err))
	}
	if v, err := g.Result(); errors.Is(err, redis.Nil) {
		gen = 0
	} else if err != nil {
		return 0, 0, fmt.Errorf("rcache: generation of %s: %w", id, err)
	} else if gen, err = strconv.ParseInt(v, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("rcache: generation of %s: %w", id, err)
	}
	switch left = ttl.Val(); {
	case left == -1:
		left = time.Hour
	case left < 0:
		left = 0
	}
	return gen, left, nil
}

// GetGenerational reads the bytes at key and the generation of id (0 when
// never bumped) in one round trip: a cached report is checked against the
// generation it was computed at with no second wait on Redis.
func (c *Cache) GetGenerational(ctx context.Context, id, key string) (gen int64, b []byte, ok bool, err error) {
	if c == nil {
		return 0, nil, false, nil
	}
	if c.down() {
		return 0, nil, false, ErrDown
	}
	var g, v *redis.StringCmd
	_, err = c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		g = p.Get(ctx, c.prefix+KeyOfGeneration(id))
		v = p.Get(ctx, c.prefix+key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		c.check(err)
		mOps.WithLabelValues("get", "error").Inc()
		return 0, nil, false, err
	}
	if gen, err = g.Int64(); errors.Is(err, redis.Nil) {
		gen = 0
	} else if err != nil {
		mOps.WithLabelValues("get", "error").Inc()
		return 0, nil, false, fmt.Errorf("rcache: generation of %s: %w", id, err)
	}
	b, err = v.Bytes()
	if errors.Is(err, redis.Nil) {
		mOps.WithLabelValues("get", "miss").Inc()
		return gen, nil, false, nil
	}
	mOps.WithLabelValues("get", "hit").Inc()
	return gen, b, true, nil
}
