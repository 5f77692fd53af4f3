package reporter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// Reports are tenant data, and every edge shares one NATS role: a leaked
// edge credential must not read any partner's reports. So the reporter
// authorises every query itself, from the credential the caller gave the
// edge, which the edge forwards:
//
//   - the admin token (natsx.HeaderAdminToken), checked against the
//     reporter's own tokens: any partner, any sub-system;
//   - or a partner's API key (natsx.HeaderAPIKey), checked with the
//     registry's auth.key (answered only to a holder of the key's secret):
//     the key must be usable, carry the report scope, and its partner be
//     active; the query is then confined to that partner, and a key bound
//     to one sub-system to that sub-system's figures and events.
//
// Answers are sealed under the forwarded credential (natsx.CallerReplyKey):
// they travel to an _INBOX every connection of the edge role may read.
// Health needs no credential and answers nothing of a tenant.

// WithAdminTokens sets the admin credentials the reporter accepts from
// callers. Start refuses to run without them.
func (s *Service) WithAdminTokens(t *admintoken.Set) *Service { s.admin = t; return s }

// keyTTL is how long a key the registry vouched for is trusted without
// asking again: a revoked key, or a suspended partner, reads reports at most
// this long after the change.
const keyTTL = 5 * time.Second

// maxKeys bounds the cache: when full, expired entries go, and if none
// had, all of them (a flood of distinct keys costs registry calls, never
// memory).
const maxKeys = 10000

type keyEntry struct {
	key       tenant.APIKey
	partnerOK error // the partner's state when the key was verified (nil: active)
	at        time.Time
}

// keyCache holds verified key records by key id. The record's hash is
// compared with the presented secret on every query, so a cached id never
// admits a wrong secret.
type keyCache struct {
	mu      sync.Mutex
	entries map[string]keyEntry
}

func (c *keyCache) get(id string, now time.Time) (keyEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if ok && now.Sub(e.at) >= keyTTL {
		delete(c.entries, id)
		return keyEntry{}, false
	}
	return e, ok
}

func (c *keyCache) put(id string, e keyEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]keyEntry{}
	}
	if len(c.entries) >= maxKeys {
		for k, x := range c.entries {
			if e.at.Sub(x.at) >= keyTTL {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxKeys {
			clear(c.entries)
		}
	}
	c.entries[id] = e
}

// confinement is what a caller may read: a partner ("" for the admin:
// any), and within it one sub-system when its key is bound to one.
type confinement struct {
	partner, sub string
}

// subSystem checks a query of sub-system id ("": the partner's whole) against
// a key bound to one sub-system.
func (c confinement) subSystem(id string) error {
	if c.sub != "" && id != c.sub {
		return apierr.New(apierr.KeySubSystem, "this key reads sub-system %s only: ask with subSystemId=%s", c.sub, c.sub)
	}
	return nil
}

// authorize checks the credential a query forwards. It returns what the
// caller is confined to, nothing for the admin.
func (s *Service) authorize(ctx context.Context, h nats.Header) (confinement, error) {
	if tok := h.Get(natsx.HeaderAdminToken); tok != "" {
		return confinement{}, s.admin.Check(tok)
	}
	if raw := h.Get(natsx.HeaderAPIKey); raw != "" {
		return s.partnerOfKey(ctx, raw)
	}
	return confinement{}, apierr.New(apierr.AdminRequired, "a report needs the admin credential or a partner API key with the report scope")
}

// partnerOfKey verifies a partner's API key and returns what it may read.
func (s *Service) partnerOfKey(ctx context.Context, raw string) (confinement, error) {
	id, secret, ok := tenant.ParseKey(strings.TrimSpace(raw))
	if !ok {
		return confinement{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	now := s.now()
	e, ok := s.keys.get(id, now)
	if !ok {
		var err error
		if e, err = s.verifyKey(ctx, id, secret); err != nil {
			return confinement{}, err
		}
		e.at = now
		s.keys.put(id, e)
	}
	k := e.key
	switch {
	case !tenant.SecretMatches(secret, k.Hash):
		return confinement{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	case k.Status != tenant.KeyActive:
		return confinement{}, apierr.New(apierr.APIKeyRevoked, "this API key was revoked")
	case !k.Usable(now):
		return confinement{}, apierr.New(apierr.APIKeyExpired, "this API key expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339))
	case e.partnerOK != nil:
		return confinement{}, e.partnerOK
	case !k.HasScope(tenant.ScopeReport):
		return confinement{}, apierr.New(apierr.ScopeMissing, "this key lacks the %s scope", tenant.ScopeReport)
	}
	return confinement{partner: k.PartnerID, sub: k.SubSystemID}, nil
}

// verifyKey asks the registry for the key's record, proving it holds the
// secret (the answer is sealed under it), and reads the partner's state.
// A refused key is not cached.
func (s *Service) verifyKey(ctx context.Context, id, secret string) (keyEntry, error) {
	var k tenant.APIKey
	sctx := natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, secret))
	err := natsx.Call(sctx, s.nc, subject.Registry(api.AuthKey), api.Request{KeyID: id, Secret: secret}, &k)
	switch {
	case apierr.Is(err, apierr.APIKeyNotFound), apierr.Is(err, apierr.APIKeyInvalid):
		return keyEntry{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	case err != nil:
		return keyEntry{}, err
	case k.ID != id || !tenant.SecretMatches(secret, k.Hash):
		return keyEntry{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	e := keyEntry{key: k}
	p, err := s.store.GetPartner(ctx, k.PartnerID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return keyEntry{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	case err != nil:
		return keyEntry{}, err
	case p.Status != tenant.Active:
		e.partnerOK = apierr.New(apierr.PartnerInactive, "the partner of this key is %s", strings.ToLower(string(p.Status)))
	}
	return e, nil
}

// guarded is a report endpoint: fn runs only for an authorised caller,
// with what it is confined to (nothing for the admin).
func (s *Service) guarded(op string, fn func(ctx context.Context, confined confinement, data []byte) (any, error)) natsx.HandlerFunc {
	return func(ctx context.Context, data []byte) (any, error) {
		confined, err := s.authorize(ctx, natsx.RequestHeaders(ctx))
		if err != nil {
			// Never the credential itself: only that the query was refused.
			s.log.Warn().Str("op", op).Str("code", string(apierr.From(err).Code)).Msg("refused: no valid admin or report credential")
			return nil, err
		}
		return fn(ctx, confined, data)
	}
}
