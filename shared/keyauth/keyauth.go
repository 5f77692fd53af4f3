// Package keyauth verifies a partner API key a caller gave the edge, which
// the edge forwards to a service (natsx.HeaderAPIKey). Every edge shares one
// NATS role, so a service that answers tenant data checks the credential
// itself: a leaked edge credential alone reads no partner's data.
//
// A key is checked with the registry's auth.key, answered only to a holder
// of the key's secret; it must be usable, carry the scope asked for, and
// its partner be active. The caller is then confined to that partner, and
// a key bound to one sub-system to that sub-system.
package keyauth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// TTL is how long a key the registry vouched for is trusted without asking
// again: a revoked key, or a suspended partner, is let in at most this long
// after the change.
const TTL = 5 * time.Second

// maxKeys bounds the cache: when full, expired entries go, and if none
// had, all of them (a flood of distinct keys costs registry calls, never
// memory).
const maxKeys = 10000

// Confinement is what a key's holder may read: a partner, and within it one
// sub-system when the key is bound to one ("" for none).
type Confinement struct {
	Partner, SubSystem string
}

// Verifier checks forwarded keys, caching what the registry vouched for.
type Verifier struct {
	nc *nats.Conn
	// partner reads a partner's record (its status); storage.ErrNotFound
	// when there is none.
	partner func(ctx context.Context, id string) (tenant.Partner, error)
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	key       tenant.APIKey
	partnerOK error // the partner's state when the key was verified (nil: active)
	at        time.Time
}

// New makes a verifier that asks the registry over nc, and partner for the
// state of a key's partner.
func New(nc *nats.Conn, partner func(ctx context.Context, id string) (tenant.Partner, error)) *Verifier {
	return &Verifier{nc: nc, partner: partner, now: time.Now, entries: map[string]entry{}}
}

// WithClock sets the verifier's clock (tests).
func (v *Verifier) WithClock(now func() time.Time) *Verifier { v.now = now; return v }

// Check verifies raw, a key as the caller presented it, for scope.
func (v *Verifier) Check(ctx context.Context, raw, scope string) (Confinement, error) {
	id, secret, ok := tenant.ParseKey(strings.TrimSpace(raw))
	if !ok {
		return Confinement{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	now := v.now()
	e, ok := v.get(id, now)
	if !ok {
		var err error
		if e, err = v.verify(ctx, id, secret); err != nil {
			return Confinement{}, err
		}
		e.at = now
		v.put(id, e)
	}
	k := e.key
	switch {
	// The record's hash is compared with the presented secret every time,
	// so a cached id never admits a wrong secret.
	case !tenant.SecretMatches(secret, k.Hash):
		return Confinement{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	case k.Status != tenant.KeyActive:
		return Confinement{}, apierr.New(apierr.APIKeyRevoked, "this API key was revoked")
	case !k.Usable(now):
		return Confinement{}, apierr.New(apierr.APIKeyExpired, "this API key expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339))
	case e.partnerOK != nil:
		return Confinement{}, e.partnerOK
	case !k.HasScope(scope):
		return Confinement{}, apierr.New(apierr.ScopeMissing, "this key lacks the %s scope", scope)
	}
	return Confinement{Partner: k.PartnerID, SubSystem: k.SubSystemID}, nil
}

// verify asks the registry for the key's record, proving it holds the
// secret (the answer is sealed under it), and reads the partner's state.
// A refused key is not cached.
func (v *Verifier) verify(ctx context.Context, id, secret string) (entry, error) {
	var k tenant.APIKey
	sctx := natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, secret))
	err := natsx.Call(sctx, v.nc, subject.Registry(api.AuthKey), api.Request{KeyID: id, Secret: secret}, &k)
	switch {
	case apierr.Is(err, apierr.APIKeyNotFound), apierr.Is(err, apierr.APIKeyInvalid):
		return entry{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	case err != nil:
		return entry{}, err
	case k.ID != id || !tenant.SecretMatches(secret, k.Hash):
		return entry{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	e := entry{key: k}
	p, err := v.partner(ctx, k.PartnerID)
	switch {
	case errors.Is(err, storage.ErrNotFound), apierr.Is(err, apierr.PartnerNotFound):
		return entry{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	case err != nil:
		return entry{}, err
	case p.Status != tenant.Active:
		e.partnerOK = apierr.New(apierr.PartnerInactive, "the partner of this key is %s", strings.ToLower(string(p.Status)))
	}
	return e, nil
}

func (v *Verifier) get(id string, now time.Time) (entry, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.entries[id]
	if ok && now.Sub(e.at) >= TTL {
		delete(v.entries, id)
		return entry{}, false
	}
	return e, ok
}

func (v *Verifier) put(id string, e entry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.entries) >= maxKeys {
		for k, x := range v.entries {
			if e.at.Sub(x.at) >= TTL {
				delete(v.entries, k)
			}
		}
		if len(v.entries) >= maxKeys {
			clear(v.entries)
		}
	}
	v.entries[id] = e
}
