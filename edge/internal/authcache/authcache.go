// Package authcache is the edge's view of the registry: API keys by key id
// and partners with their sub-systems. Entries are filled on demand from the
// registry, dropped the moment a change is broadcast, and all dropped when a
// change may have been missed (a sequence gap, a reconnect). Unknown keys are
// cached too, so a flood of bad keys costs what a flood of good ones does.
package authcache

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

var (
	mLookups = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_edge_auth_cache_lookups_total",
		Help: "Auth cache lookups by kind (key, partner) and result (hit, miss)."}, []string{"kind", "result"})
	mFlushes = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_auth_cache_flushes_total",
		Help: "Whole-cache flushes after a missed registry change or a reconnect."})
	mGraceServed = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_auth_grace_served_total",
		Help: "Lookups the silent registry could not answer, served from this edge's cache during -registry-silent-grace."})
	mStaleShared = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_auth_shared_stale_total",
		Help: "Shared (Redis) auth entries skipped because a change announced a newer version."})
)

type keyEntry struct {
	key     tenant.APIKey
	missing bool // the registry does not know this key id
	at      time.Time
}

type floor struct {
	version int64
	at      time.Time
}

// floorTTL bounds how long a floor is kept: longer than any shared entry
// lives (the registry writes them for 10 minutes).
const floorTTL = 15 * time.Minute

type partnerEntry struct {
	snap api.PartnerSnapshot
	subs map[string]tenant.SubSystem // by code
	at   time.Time
}

// Cache is safe for concurrent use.
type Cache struct {
	nc  *nats.Conn
	log zerolog.Logger
	ttl time.Duration

	mu       sync.RWMutex
	gen      uint64 // bumped by every invalidation; a fetch that raced one is not stored
	keys     map[string]keyEntry
	partners map[string]partnerEntry
	// floors are the latest versions announced by changes, by "k"+key id
	// and "p"+partner id: no entry older than its floor is trusted, from
	// the shared cache or anywhere, so a shared entry whose refresh failed
	// cannot bring back what a change replaced.
	floors  map[string]floor
	lastSeq uint64
	swept   time.Time // entries past their TTL are deleted, at most once a TTL
	sf      singleflight.Group
	shared  *rcache.Cache // written by the registry, read here; nil: none

	staleAfter time.Duration // 0: never
	grace      time.Duration // past staleAfter, cached entries still serve while the registry cannot answer
	heard      atomic.Int64  // unix nanos of the last change or heartbeat
}

// WithStaleBound makes the cache stop trusting its entries (and the shared
// ones) when the registry has not been heard from for d: every lookup then
// asks the registry, and fails if it cannot answer.
func (c *Cache) WithStaleBound(d time.Duration) *Cache {
	c.staleAfter = d
	c.heard.Store(time.Now().UnixNano())
	return c
}

// WithSilentGrace sets the policy once the registry has been silent past
// the bound: 0 (the default) fails closed, every lookup the registry cannot
// answer fails; d > 0 serves an entry this edge already holds for d more
// while the registry cannot answer. The trade-off: during the grace a
// revocation made meanwhile is not seen, but ingest with known keys goes on.
func (c *Cache) WithSilentGrace(d time.Duration) *Cache {
	c.grace = d
	return c
}

// inGrace tells whether a lookup the registry failed may serve a held
// entry: the registry is silent past the bound, but within the grace, and
// the failure is the registry's silence, not an answer.
func (c *Cache) inGrace(err error) bool {
	if c.grace <= 0 || !c.Stale() || time.Since(time.Unix(0, c.heard.Load())) > c.staleAfter+c.grace {
		return false
	}
	switch apierr.From(err).Code {
	case apierr.Unavailable, apierr.Timeout:
		return true
	}
	return false
}

// Stale reports whether the registry has been silent past the bound.
func (c *Cache) Stale() bool {
	return c.staleAfter > 0 && time.Since(time.Unix(0, c.heard.Load())) > c.staleAfter
}

// WithShared adds the shared (Redis) cache between this cache and the registry.
func (c *Cache) WithShared(s *rcache.Cache) *Cache { c.shared = s; return c }

// fromShared reads a shared entry; any Redis problem is a miss, and so is
// an entry older than the floor of its record.
func (c *Cache) fromShared(ctx context.Context, key, floorKey string, v any) bool {
	version, ok, err := c.shared.GetVersioned(ctx, key, v)
	if err != nil {
		c.log.Debug().Err(err).Msg("shared cache unavailable; asking the registry")
	}
	if ok && err == nil && version < c.floor(floorKey) {
		mStaleShared.Inc()
		return false
	}
	return ok && err == nil
}

// floor is the latest announced version of a record (0: none heard).
func (c *Cache) floor(key string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.floors[key].version
}

// New makes a cache that asks the registry over nc. ttl bounds how long an
// entry is trusted without any change heard, as a backstop.
func New(nc *nats.Conn, ttl time.Duration, log zerolog.Logger) *Cache {
	return &Cache{nc: nc, ttl: ttl, log: log, keys: map[string]keyEntry{}, partners: map[string]partnerEntry{}, floors: map[string]floor{}}
}

// Key returns the key record for a key id, or an APIKeyInvalid error. The
// registry answers only to a caller holding the key, so the presented
// secret goes with a lookup (and seals the answer); a secret the registry
// refuses is not cached, so it cannot make a valid key look missing.
func (c *Cache) Key(ctx context.Context, id, secret string) (tenant.APIKey, error) {
	stale := c.Stale()
	c.mu.RLock()
	e, ok := c.keys[id]
	c.mu.RUnlock()
	if ok && time.Since(e.at) < c.ttl && !stale {
		mLookups.WithLabelValues("key", "hit").Inc()
		if e.missing {
			return tenant.APIKey{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
		}
		return e.key, nil
	}
	mLookups.WithLabelValues("key", "miss").Inc()
	// One lookup per id and secret: a wrong secret never shares a right one's answer.
	v, err, _ := c.sf.Do("k"+id+"\x00"+secret, func() (any, error) {
		gen := c.generation()
		var k tenant.APIKey
		var err error
		if stale || !c.fromShared(ctx, rcache.KeyOfAPIKey(id), "k"+id, &k) {
			sctx := natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, secret))
			err = natsx.Call(sctx, c.nc, subject.Registry(api.AuthKey), api.Request{KeyID: id, Secret: secret}, &k)
		}
		missing := apierr.Is(err, apierr.APIKeyNotFound)
		if err != nil && !missing {
			return nil, err
		}
		if !missing && k.Version < c.floor("k"+id) {
			return keyEntry{key: k}, nil // older than announced (a lagging replica): use once, keep nothing
		}
		c.store(gen, func() { c.keys[id] = keyEntry{key: k, missing: missing, at: time.Now()} })
		return keyEntry{key: k, missing: missing}, nil
	})
	if err != nil {
		if ok && !e.missing && c.inGrace(err) {
			mGraceServed.Inc()
			return e.key, nil
		}
		return tenant.APIKey{}, err
	}
	if e := v.(keyEntry); !e.missing {
		return e.key, nil
	}
	return tenant.APIKey{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
}

// Partner is a cached partner with its live sub-systems.
type Partner struct {
	tenant.Partner
	subs map[string]tenant.SubSystem // by code
}

// SubSystemByID finds a sub-system of the partner by id.
func (p Partner) SubSystemByID(id string) (tenant.SubSystem, bool) {
	for _, s := range p.subs {
		if s.ID == id {
			return s, true
		}
	}
	return tenant.SubSystem{}, false
}

// SubSystem finds a sub-system of the partner by code.
func (p Partner) SubSystem(code string) (tenant.SubSystem, bool) {
	s, ok := p.subs[code]
	if !ok {
		s, ok = p.subs[storage.CodeKey(code)]
	}
	return s, ok
}

// Partner returns a partner and its sub-systems.
func (c *Cache) Partner(ctx context.Context, id string) (Partner, error) {
	stale := c.Stale()
	c.mu.RLock()
	e, ok := c.partners[id]
	c.mu.RUnlock()
	if ok && time.Since(e.at) < c.ttl && !stale {
		mLookups.WithLabelValues("partner", "hit").Inc()
		return Partner{e.snap.Partner, e.subs}, nil
	}
	mLookups.WithLabelValues("partner", "miss").Inc()
	v, err, _ := c.sf.Do("p"+id, func() (any, error) {
		gen := c.generation()
		var snap api.PartnerSnapshot
		if stale || !c.fromShared(ctx, rcache.KeyOfPartner(id), "p"+id, &snap) {
			if err := natsx.Call(ctx, c.nc, subject.Registry(api.AuthPartner), api.Request{PartnerID: id}, &snap); err != nil {
				return nil, err
			}
		}
		subs := make(map[string]tenant.SubSystem, 2*len(snap.SubSystems))
		for _, s := range snap.SubSystems {
			subs[s.Code] = s
		}
		// Codes are unique up to case: any case finds the sub-system, the
		// exact code first (legacy codes may differ by case only).
		for _, s := range snap.SubSystems {
			if lc := storage.CodeKey(s.Code); lc != s.Code {
				if _, taken := subs[lc]; !taken {
					subs[lc] = s
				}
			}
		}
		if snap.Version < c.floor("p"+id) {
			return Partner{snap.Partner, subs}, nil // older than announced: use once, keep nothing
		}
		c.store(gen, func() { c.partners[id] = partnerEntry{snap: snap, subs: subs, at: time.Now()} })
		return Partner{snap.Partner, subs}, nil
	})
	if err != nil {
		if ok && c.inGrace(err) {
			mGraceServed.Inc()
			return Partner{e.snap.Partner, e.subs}, nil
		}
		return Partner{}, err
	}
	return v.(Partner), nil
}

func (c *Cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// store runs set under the lock unless an invalidation happened since gen.
// It also deletes expired entries now and then, so a flood of unknown key
// ids (each cached negatively) cannot grow the cache without bound.
func (c *Cache) store(gen uint64, set func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.swept) > c.ttl {
		for id, e := range c.keys {
			if now.Sub(e.at) >= c.ttl {
				delete(c.keys, id)
			}
		}
		for id, e := range c.partners {
			if now.Sub(e.at) >= c.ttl {
				delete(c.partners, id)
			}
		}
		for k, f := range c.floors {
			if now.Sub(f.at) >= floorTTL {
				delete(c.floors, k)
			}
		}
		c.swept = now
	}
	if c.gen == gen {
		set()
	}
}

// Len is the number of cached entries (keys, partners).
func (c *Cache) Len() (keys, partners int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys), len(c.partners)
}

// Apply drops what a change makes stale.
func (c *Cache) Apply(ch api.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	raise := func(key string, v int64) {
		if f := c.floors[key]; v > f.version {
			c.floors[key] = floor{version: v, at: time.Now()}
		}
	}
	if ch.KeyID != "" {
		delete(c.keys, ch.KeyID)
		raise("k"+ch.KeyID, ch.KeyVersion)
	}
	if ch.PartnerID != "" {
		delete(c.partners, ch.PartnerID)
		raise("p"+ch.PartnerID, ch.PartnerVersion)
	}
}

// Flush drops everything.
func (c *Cache) Flush(reason string) {
	c.mu.Lock()
	c.gen++
	c.keys = map[string]keyEntry{}
	c.partners = map[string]partnerEntry{}
	c.mu.Unlock()
	mFlushes.Inc()
	c.log.Info().Str("reason", reason).Msg("auth cache flushed")
}

// Follow applies registry changes until ctx ends. It returns once the
// subscription is in place, so no change after its return is missed.
func (c *Cache) Follow(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.OrderedConsumer(ctx, subject.RegistryChangesStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		// Stopping is asynchronous: a follower told to stop applies
		// nothing more, so whoever follows next sees any change it missed
		// as a gap.
		if ctx.Err() != nil {
			return
		}
		c.heard.Store(time.Now().UnixNano())
		md, err := m.Metadata()
		if err != nil {
			c.Flush("change without metadata")
			return
		}
		c.mu.Lock()
		last := c.lastSeq
		c.lastSeq = md.Sequence.Stream
		c.mu.Unlock()
		if last != 0 && md.Sequence.Stream != last+1 {
			c.Flush("registry change sequence gap")
			return
		}
		var ch api.Change
		if err := json.Unmarshal(m.Data(), &ch); err != nil {
			c.Flush("undecodable change")
			return
		}
		if ch.Kind != api.KindHeartbeat {
			c.Apply(ch)
		}
	})
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, cc.Stop)
	return nil
}

// Reconnected is called when the NATS connection comes back: changes may
// have been missed while it was down.
func (c *Cache) Reconnected() { c.Flush("nats reconnected") }
