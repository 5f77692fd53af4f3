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
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

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
}

// sharedTTL bounds a shared cache entry; changes refresh entries before it.
const sharedTTL = 10 * time.Minute

// WithCache makes the registry the writer of the shared (Redis) auth cache
// edges read: it refreshes an entry before broadcasting the change, and
// fills missing ones with SET NX, so an answer read before a change never
// overwrites the newer value.
func (s *Service) WithCache(c *rcache.Cache) *Service { s.cache = c; return s }

// New makes a registry over a store.
func New(store storage.Store, js jetstream.JetStream, log zerolog.Logger) *Service {
	return &Service{store: store, pinger: store, js: js, log: log.With().Str("svc", "registry").Logger(), now: time.Now}
}

// Start checks the change stream was provisioned and registers the micro
// service on nc.
func (s *Service) Start(ctx context.Context, nc *nats.Conn) (micro.Service, error) {
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
		if err := g.AddEndpoint(strings.ReplaceAll(op, ".", "_"), h, micro.WithEndpointSubject(op)); err != nil {
			svc.Stop()
			return nil, fmt.Errorf("registry: add endpoint %s: %w", op, err)
		}
	}
	return svc, nil
}

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

// broadcast publishes a change. The write it describes is already committed,
// so a failure is retried a few times and then logged; edges also bound the
// age of cached entries.
func (s *Service) broadcast(ctx context.Context, c api.Change) {
	s.refreshShared(ctx, c)
	c.At = s.now().UTC()
	data, _ := json.Marshal(c)
	var err error
	for i := 0; i < 3; i++ {
		if _, err = s.js.Publish(ctx, subject.RegistryChanges, data); err == nil {
			return
		}
		time.Sleep(time.Duration(i+1) * 50 * time.Millisecond)
	}
	s.log.Error().Err(err).Str("kind", c.Kind).Str("partner_id", c.PartnerID).Msg("change broadcast failed")
}

// refreshShared writes the fresh record a change touches into the shared cache.
func (s *Service) refreshShared(ctx context.Context, c api.Change) {
	if s.cache == nil {
		return
	}
	var err error
	if c.KeyID != "" {
		var k tenant.APIKey
		if k, err = s.store.GetAPIKey(ctx, c.KeyID); err == nil {
			err = s.cache.Set(ctx, rcache.KeyOfAPIKey(k.ID), k, sharedTTL)
		}
	}
	if err == nil && c.PartnerID != "" {
		var snap api.PartnerSnapshot
		if snap, err = s.snapshot(ctx, c.PartnerID); err == nil {
			err = s.cache.Set(ctx, rcache.KeyOfPartner(c.PartnerID), snap, sharedTTL)
		}
	}
	if err != nil {
		// Drop what may be stale; edges then ask the registry.
		s.log.Warn().Err(err).Msg("shared cache refresh failed")
		_ = s.cache.Delete(ctx, rcache.KeyOfAPIKey(c.KeyID), rcache.KeyOfPartner(c.PartnerID))
	}
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
	}
	return fmt.Errorf("registry: %s: %w", what, err)
}
