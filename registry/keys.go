package registry

import (
	"time"

	"context"

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

func (s *Service) newKey(ctx context.Context, partnerID, name string, expires *time.Time) (api.CreatedKey, error) {
	id, plain, hash := tenant.GenerateKey()
	k := tenant.APIKey{ID: id, PartnerID: partnerID, Name: name, Hash: hash, Status: tenant.KeyActive, ExpiresAt: expires, CreatedAt: s.now().UTC()}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return api.CreatedKey{}, storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	s.broadcast(ctx, api.Change{Kind: api.KindKey, Op: "created", PartnerID: partnerID, KeyID: id})
	return api.CreatedKey{KeyView: k.View(), APIKey: plain}, nil
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
	return s.newKey(ctx, p.ID, *r.Name, utc(r.ExpiredAt))
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

// regenerateKey revokes a key and issues its replacement, keeping the name
// and expiry unless the request sets them.
func (s *Service) regenerateKey(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkName(r.Name, false, &fields)
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
	if err := s.revoke(ctx, k); err != nil {
		return nil, err
	}
	return s.newKey(ctx, p.ID, name, expires)
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
