package registry

import (
	"context"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

func pageOf(n int) storage.Page { return storage.Page{Offset: n * MaxPageSize, Limit: MaxPageSize} }

func (s *Service) checkExpiry(r api.Request) error {
	if r.ExpiredAt != nil && !r.ExpiredAt.After(s.now()) {
		return apierr.Invalid(apierr.FieldError{Field: "expiredAt", Message: "must be in the future"})
	}
	return nil
}

// newKey issues a key with the settings of tmpl (name, scopes, binding, limits).
func (s *Service) newKey(ctx context.Context, tmpl tenant.APIKey) (api.CreatedKey, error) {
	id, plain, hash := tenant.GenerateKey()
	k := tmpl
	k.ID, k.Hash, k.Status, k.CreatedAt = id, hash, tenant.KeyActive, s.now().UTC()
	k.RevokedAt, k.LastUsedAt = nil, nil
	k.SigningSecret = tenant.NewSigningSecret()
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return api.CreatedKey{}, storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	s.broadcast(ctx, api.Change{Kind: api.KindKey, Op: "created", PartnerID: k.PartnerID, KeyID: id})
	return api.CreatedKey{KeyView: k.View(), APIKey: plain, SigningSecret: hex.EncodeToString(k.SigningSecret)}, nil
}

// keySettings validates and applies the settings a create or update may carry.
func (s *Service) keySettings(ctx context.Context, k *tenant.APIKey, r api.Request, fields *[]apierr.FieldError) error {
	checkRateLimit(r.RateLimit, fields)
	if r.Scopes != nil {
		if len(r.Scopes) == 0 {
			*fields = append(*fields, apierr.FieldError{Field: "scopes", Message: "must hold at least one of ingest, report"})
		}
		seen := map[string]bool{}
		for _, sc := range r.Scopes {
			if !tenant.ValidScope(sc) {
				*fields = append(*fields, apierr.FieldError{Field: "scopes", Message: "unknown scope " + strconv.Quote(sc) + "; use ingest or report"})
			} else {
				seen[sc] = true
			}
		}
		k.Scopes = nil
		for _, sc := range []string{tenant.ScopeIngest, tenant.ScopeReport} {
			if seen[sc] {
				k.Scopes = append(k.Scopes, sc)
			}
		}
	}
	if r.RateLimit != nil {
		k.RateLimit = *r.RateLimit
	}
	if r.RequireSignature != nil {
		k.RequireSignature = *r.RequireSignature
	}
	if r.Name != nil {
		k.Name = *r.Name
	}
	if r.BindSubSystemID != nil {
		k.SubSystemID = *r.BindSubSystemID
		if k.SubSystemID != "" {
			ss, err := s.store.GetSubSystem(ctx, k.SubSystemID)
			if err != nil || ss.PartnerID != k.PartnerID || ss.Status == tenant.Deleted {
				*fields = append(*fields, apierr.FieldError{Field: "subSystemId", Message: "must be a live sub-system of this partner"})
			}
		}
	}
	if len(*fields) > 0 {
		return apierr.Invalid(*fields...)
	}
	return nil
}

func (s *Service) createKey(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkName(r.Name, true, &fields)
	if len(fields) > 0 {
		return nil, apierr.Invalid(fields...)
	}
	if err := s.checkExpiry(r); err != nil {
		return nil, err
	}
	p, err := s.livePartner(ctx, r.PartnerID)
	if err != nil {
		return nil, err
	}
	k := tenant.APIKey{PartnerID: p.ID, Scopes: []string{tenant.ScopeIngest}, ExpiresAt: utc(r.ExpiredAt)}
	if err := s.keySettings(ctx, &k, r, &fields); err != nil {
		return nil, err
	}
	return s.newKey(ctx, k)
}

// updateKey changes a key's name, scopes, binding, rate limit or signing.
func (s *Service) updateKey(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkName(r.Name, false, &fields)
	_, k, err := s.key(ctx, r)
	if err != nil {
		return nil, err
	}
	if k.Status == tenant.KeyRevoked {
		return nil, apierr.New(apierr.APIKeyRevoked, "the key is revoked; issue a new one")
	}
	if err := s.keySettings(ctx, &k, r, &fields); err != nil {
		return nil, err
	}
	if err := s.store.UpdateAPIKey(ctx, k); err != nil {
		return nil, storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	s.broadcast(ctx, api.Change{Kind: api.KindKey, Op: "updated", PartnerID: k.PartnerID, KeyID: k.ID})
	return k.View(), nil
}

// touchKey records a sampled last use.
func (s *Service) touchKey(ctx context.Context, r api.Request) (any, error) {
	if !tenant.ValidKeyID(r.KeyID) || r.At == nil {
		return nil, apierr.New(apierr.InvalidParameter, "keyId and at are required")
	}
	at := *r.At
	if now := s.now(); at.After(now) {
		at = now
	}
	return nil, storeErr(s.store.TouchAPIKey(ctx, r.KeyID, at), apierr.APIKeyNotFound, "API key")
}

func (s *Service) listKeys(ctx context.Context, r api.Request) (any, error) {
	p, err := s.partner(ctx, r.PartnerID)
	if err != nil {
		return nil, err
	}
	keys, err := s.store.ListAPIKeys(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	out := make([]tenant.KeyView, len(keys))
	for i, k := range keys {
		out[i] = k.View()
	}
	return out, nil
}

// key finds a key of the partner; another partner's key is not found.
func (s *Service) key(ctx context.Context, r api.Request) (tenant.Partner, tenant.APIKey, error) {
	p, err := s.partner(ctx, r.PartnerID)
	if err != nil {
		return p, tenant.APIKey{}, err
	}
	if !tenant.ValidKeyID(r.KeyID) {
		return p, tenant.APIKey{}, apierr.New(apierr.APIKeyNotFound, "API key not found")
	}
	k, err := s.store.GetAPIKey(ctx, r.KeyID)
	if err == nil && k.PartnerID != p.ID {
		return p, k, apierr.New(apierr.APIKeyNotFound, "API key not found")
	}
	return p, k, storeErr(err, apierr.APIKeyNotFound, "API key")
}

func (s *Service) revoke(ctx context.Context, k tenant.APIKey) error {
	if k.Status == tenant.KeyRevoked {
		return nil
	}
	now := s.now().UTC()
	k.Status, k.RevokedAt = tenant.KeyRevoked, &now
	if err := s.store.UpdateAPIKey(ctx, k); err != nil {
		return storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	s.broadcast(ctx, api.Change{Kind: api.KindKey, Op: "revoked", PartnerID: k.PartnerID, KeyID: k.ID})
	return nil
}

func (s *Service) revokeKey(ctx context.Context, r api.Request) (any, error) {
	_, k, err := s.key(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := s.revoke(ctx, k); err != nil {
		return nil, err
	}
	k, err = s.store.GetAPIKey(ctx, k.ID)
	return k.View(), storeErr(err, apierr.APIKeyNotFound, "API key")
}

// MaxGrace bounds how long a rotated key keeps working.
const MaxGrace = 30 * 24 * time.Hour

// regenerateKey issues a replacement with the old key's settings (name and
// expiry unless the request sets them). The old key is revoked at once, or,
// with graceSeconds, keeps working until the grace period ends.
func (s *Service) regenerateKey(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkName(r.Name, false, &fields)
	if r.GraceSeconds != nil && (*r.GraceSeconds < 0 || time.Duration(*r.GraceSeconds)*time.Second > MaxGrace) {
		fields = append(fields, apierr.FieldError{Field: "graceSeconds", Message: "must be 0 to 2592000 (30 days)"})
	}
	if len(fields) > 0 {
		return nil, apierr.Invalid(fields...)
	}
	if err := s.checkExpiry(r); err != nil {
		return nil, err
	}
	p, k, err := s.key(ctx, r)
	if err != nil {
		return nil, err
	}
	if p.Status == tenant.Deleted {
		return nil, apierr.New(apierr.PartnerDeleted, "partner %s is deleted", p.ID)
	}
	name, expires := k.Name, k.ExpiresAt
	if r.Name != nil {
		name = *r.Name
	}
	if r.ExpiredAt != nil {
		expires = utc(r.ExpiredAt)
	} else if expires != nil && !expires.After(s.now()) {
		expires = nil // an expired key's replacement should not be born expired
	}
	next := k
	next.Name, next.ExpiresAt = name, expires
	created, err := s.newKey(ctx, next)
	if err != nil {
		return nil, err
	}
	grace := time.Duration(0)
	if r.GraceSeconds != nil {
		grace = time.Duration(*r.GraceSeconds) * time.Second
	}
	if grace == 0 || k.Status != tenant.KeyActive {
		err = s.revoke(ctx, k)
	} else if end := s.now().UTC().Add(grace); k.ExpiresAt == nil || end.Before(*k.ExpiresAt) {
		k.ExpiresAt = &end // still works until then, on every edge
		if err = s.store.UpdateAPIKey(ctx, k); err == nil {
			s.broadcast(ctx, api.Change{Kind: api.KindKey, Op: "rotated", PartnerID: k.PartnerID, KeyID: k.ID})
		}
	}
	if err != nil {
		return nil, err
	}
	return created, nil
}

func (s *Service) authKey(ctx context.Context, r api.Request) (any, error) {
	if !tenant.ValidKeyID(r.KeyID) {
		return nil, apierr.New(apierr.APIKeyNotFound, "API key not found")
	}
	k, err := s.store.GetAPIKey(ctx, r.KeyID)
	if err == nil && s.cache != nil {
		_ = s.cache.SetNX(ctx, rcache.KeyOfAPIKey(k.ID), k, sharedTTL)
	}
	return k, storeErr(err, apierr.APIKeyNotFound, "API key")
}

func (s *Service) snapshot(ctx context.Context, partnerID string) (api.PartnerSnapshot, error) {
	p, err := s.partner(ctx, partnerID)
	if err != nil {
		return api.PartnerSnapshot{}, err
	}
	subs, err := s.store.ListSubSystems(ctx, p.ID, false)
	if err != nil {
		return api.PartnerSnapshot{}, err
	}
	return api.PartnerSnapshot{Partner: p, SubSystems: subs}, nil
}

func (s *Service) authPartner(ctx context.Context, r api.Request) (any, error) {
	snap, err := s.snapshot(ctx, r.PartnerID)
	if err == nil && s.cache != nil {
		_ = s.cache.SetNX(ctx, rcache.KeyOfPartner(r.PartnerID), snap, sharedTTL)
	}
	return snap, err
}
