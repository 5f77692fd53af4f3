// Package registry is the service that owns partners, sub-systems and API
// keys. It serves the registryapi operations over NATS micro and broadcasts
// every change so edges drop stale cached entries at once.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
)

// retries bounds how often a change that lost a compare-and-set race is
// re-read and re-decided before the caller is told to retry.
const retries = 10

// transact runs a read-decide-write step until its conditional write is not
// beaten by a concurrent one: each attempt decides on the latest record.
func transact[T any](fn func() (T, error)) (T, error) {
	for i := 1; ; i++ {
		v, err := fn()
		if !errors.Is(err, storage.ErrConflict) || i == retries {
			return v, err
		}
	}
}

// Version is reported by the micro service.
const Version = "0.1.0"

// Service is the registry.
type Service struct {
	store  storage.Tenants
	pinger interface{ Ping(context.Context) error }
	js     jetstream.JetStream
	log    zerolog.Logger
	now    func() time.Time
	cache  *rcache.Cache // shared auth entries for edges; nil: none
	admin  *admintoken.Set
	// sharedTTL bounds a shared cache entry; changes refresh entries before it.
	sharedTTL time.Duration
}

// WithCache makes the registry the writer of the shared (Redis) auth cache
// edges read: it refreshes an entry before broadcasting the change, and
// fills entries on reads; every write is versioned, so an answer read
// before a change never overwrites the newer value.
func (s *Service) WithCache(c *rcache.Cache) *Service { s.cache = c; return s }

// New makes a registry over a store.
func New(store storage.Store, js jetstream.JetStream, log zerolog.Logger) *Service {
	return &Service{store: store, pinger: store, js: js, log: log.With().Str("svc", "registry").Logger(), now: time.Now,
		sharedTTL: DefaultConfig().SharedCacheTTL}
}

// Start checks the change stream was provisioned and registers the micro
// service on nc.
func (s *Service) Start(ctx context.Context, nc *nats.Conn) (*natsx.Served, error) {
	if s.admin == nil {
		return nil, errors.New("registry: no admin tokens: admin operations would be open to any NATS client")
	}
	if err := provision.Verify(ctx, s.js, provision.NeedRegistry); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        subject.RegistryService,
		Version:     Version,
		Description: "partners, sub-systems and API keys",
	})
	if err != nil {
		return nil, fmt.Errorf("registry: add service: %w", err)
	}
	g := svc.AddGroup(subject.RegistryPrefix)
	// Key lookups, which ingest waits for, have a pool of their own: no
	// burst of admin requests or slow store writes takes their turns.
	pool, lookups := natsx.NewPool(nc, inFlight), natsx.NewPool(nc, inFlight)
	ops := map[string]func(context.Context, api.Request) (any, error){
		api.PartnersList: s.listPartners, api.PartnersGet: s.getPartner, api.PartnersByCode: s.partnerByCode,
		api.PartnersCreate: s.createPartner, api.PartnersUpdate: s.updatePartner, api.PartnersDelete: s.deletePartner,
		api.PartnersToggle:   s.togglePartner,
		api.SubSystemsCreate: s.createSubSystem, api.SubSystemsList: s.listSubSystems, api.SubSystemsGet: s.getSubSystem,
		api.SubSystemsByCode: s.subSystemByCode, api.SubSystemsUpdate: s.updateSubSystem, api.SubSystemsDelete: s.deleteSubSystem,
		api.SubSystemsToggle: s.toggleSubSystem, api.SubSystemsAll: s.allSubSystems,
		api.KeysCreate: s.createKey, api.KeysList: s.listKeys, api.KeysRevoke: s.revokeKey, api.KeysRegenerate: s.regenerateKey,
		api.KeysUpdate: s.updateKey, api.KeysTouch: s.touchKey,
		api.AuthKey: s.authKeyProven, api.AuthPartner: s.authPartner,
		api.Health: s.health,
	}
	go s.heartbeat(ctx, nc)
	for op, fn := range ops {
		fn := fn
		h := natsx.Handler(s.log, "registry", op, 10*time.Second, func(ctx context.Context, data []byte) (any, error) {
			var req api.Request
			if len(data) > 0 {
				if err := json.Unmarshal(data, &req); err != nil {
					return nil, apierr.New(apierr.InvalidJSON, "bad registry request: %v", err)
				}
			}
			return fn(ctx, req)
		})
		h = natsx.SealReplies(replyKeyOf(op), h)
		if NeedsAdmin(op) {
			h = natsx.Guard(s.log, op, s.checkAdmin, h)
		}
		on := pool
		if op == api.AuthKey || op == api.AuthPartner {
			on = lookups
		}
		if err := g.AddEndpoint(strings.ReplaceAll(op, ".", "_"), on.Wrap(h), micro.WithEndpointSubject(op)); err != nil {
			natsx.Serving(svc, 0, pool, lookups).Stop() // nothing was served
			return nil, fmt.Errorf("registry: add endpoint %s: %w", op, err)
		}
	}
	return natsx.Serving(svc, stopWait, pool, lookups), nil
}

// inFlight bounds the requests a registry holds at once on each of its two
// pools (key lookups; the rest), each on its own goroutine: a slow write
// does not hold the lookups behind it. Past it a request is refused
// (overloaded: 503 with Retry-After at the edge).
const inFlight = 128

// stopWait bounds a stopping registry's wait for the requests in flight
// (each ends within its handler's 10 s).
const stopWait = 15 * time.Second

// heartbeat tells edges the registry is there, until ctx ends or nc closes.
func (s *Service) heartbeat(ctx context.Context, nc *nats.Conn) {
	t := time.NewTicker(api.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if nc.IsClosed() {
			return
		}
		data, _ := json.Marshal(api.Change{Kind: api.KindHeartbeat, At: s.now().UTC()})
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := s.js.Publish(pctx, subject.RegistryChanges, data); err != nil && !nc.IsClosed() {
			s.log.Debug().Err(err).Msg("heartbeat not published")
		}
		cancel()
	}
}

var mBroadcastFailures = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_registry_change_broadcast_failures_total",
	Help: "Registry changes (revocations among them) stored but not announced to the edges after retries; the client was told to repeat the change."})

// announce is the commit point of a change for the edges. It writes the
// fresh records into the shared cache (versioned: never backwards) and
// publishes the change with the versions it produced. A change stored but
// not announced answers PropagationPending; every change is idempotent to
// repeat, and a repeat announces it again. Edges also stop trusting their
// caches when they hear nothing (the staleness bound).
func (s *Service) announce(ctx context.Context, c api.Change) error {
	s.refreshShared(ctx, &c)
	c.At = s.now().UTC()
	data, _ := json.Marshal(c)
	var err error
	for i := 0; i < 3; i++ {
		if _, err = s.js.Publish(ctx, subject.RegistryChanges, data); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(i+1) * 50 * time.Millisecond):
		}
	}
	mBroadcastFailures.Inc()
	s.log.Error().Err(err).Str("kind", c.Kind).Str("op", c.Op).Str("partner_id", c.PartnerID).Msg("change broadcast failed")
	return apierr.New(apierr.PropagationPending,
		"the change is stored but not yet announced to the edges (they stop trusting cached entries after -registry-stale-after, 30s by default, without news); repeat the request to announce it")
}

// refreshShared reads the records a change touches, sets the change's
// versions and writes the records into the shared cache. A failed write is
// retried in the background; meanwhile edges refuse any shared entry older
// than the versions the change carries.
func (s *Service) refreshShared(ctx context.Context, c *api.Change) {
	if c.KeyID != "" {
		if k, err := s.store.GetAPIKey(ctx, c.KeyID); err == nil {
			c.KeyVersion = k.Version
			s.putShared(ctx, rcache.KeyOfAPIKey(k.ID), k.Version, k)
		}
	}
	if c.PartnerID != "" {
		if snap, err := s.snapshot(ctx, c.PartnerID); err == nil {
			c.PartnerVersion = snap.Version
			s.putShared(ctx, rcache.KeyOfPartner(c.PartnerID), snap.Version, snap)
		}
	}
}

func (s *Service) putShared(ctx context.Context, key string, version int64, v any) {
	if s.cache == nil {
		return
	}
	if _, err := s.cache.SetVersioned(ctx, key, version, v, s.sharedTTL); err == nil {
		return
	}
	go func() {
		// Until it lands, Redis may hold an older version; edges that heard
		// the change skip it, and it expires within s.sharedTTL anyway.
		for i := 0; i < 30; i++ {
			time.Sleep(time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := s.cache.SetVersioned(ctx, key, version, v, s.sharedTTL)
			cancel()
			if err == nil {
				return
			}
		}
		s.log.Warn().Str("entry", key).Msg("shared cache refresh abandoned; the entry expires on its own")
	}()
}

func (s *Service) health(ctx context.Context, _ api.Request) (any, error) {
	if err := s.pinger.Ping(ctx); err != nil {
		return nil, apierr.New(apierr.Unavailable, "storage is not answering")
	}
	return api.HealthStatus{Storage: "ok"}, nil
}

// storeErr turns storage errors into API errors for the record kind at hand.
func storeErr(err error, notFound apierr.Code, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound):
		return apierr.New(notFound, "%s not found", what)
	case errors.Is(err, storage.ErrCodeTaken):
		return apierr.New(apierr.CodeTaken, "the code is already used by another %s", what)
	case errors.Is(err, storage.ErrExists):
		return apierr.New(apierr.Conflict, "%s already exists", what)
	case errors.Is(err, storage.ErrConflict):
		return apierr.New(apierr.Conflict, "the %s was changed by another request at the same time; read it again and retry", what)
	}
	return fmt.Errorf("registry: %s: %w", what, err)
}
