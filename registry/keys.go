package registry

import (
	"context"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

func pageOf(n int) storage.Page { return storage.Page{Offset: n * MaxPageSize, Limit: MaxPageSize} }

func (s *Service) checkExpiry(r api.Request) error {
	if r.ExpiredAt == nil {
		return nil
	}
	if err := instant.Check(r.ExpiredAt.UTC()); err != nil {
		return apierr.Invalid(apierr.FieldError{Field: "expiredAt", Message: err.Error()})
	}
	if !r.ExpiredAt.After(s.now()) {
		return apierr.Invalid(apierr.FieldError{Field: "expiredAt", Message: "must be in the future"})
	}
	return nil
}

// newKey issues a key with the settings of tmpl (name, scopes, binding,
// limits). A key created while its partner was being deleted is revoked
// again at once: deletePartner marks the partner first and sweeps its keys
// after, so either the sweep sees the key or this check sees the delete.
func (s *Service) newKey(ctx context.Context, tmpl tenant.APIKey) (api.CreatedKey, error) {
	id, plain, hash := tenant.GenerateKey()
	k := tmpl
	k.ID, k.Hash, k.Status, k.CreatedAt, k.Version = id, hash, tenant.KeyActive, s.now().UTC(), 1
	k.RevokedAt, k.LastUsedAt, k.ReplacedBy = nil, nil, ""
	k.SigningSecret = tenant.NewSigningSecret()
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return api.CreatedKey{}, storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	if p, err := s.store.GetPartner(ctx, k.PartnerID); err != nil || p.Status == tenant.Deleted {
		_ = s.revoke(ctx, k.PartnerID, k.ID)
		if err != nil {
			return api.CreatedKey{}, storeErr(err, apierr.PartnerNotFound, "partner")
		}
		return api.CreatedKey{}, apierr.New(apierr.PartnerDeleted, "partner %s is deleted", k.PartnerID)
	}
	// A new key is in no cache yet (an edge may hold a "no such key" entry
	// for its id only if someone guessed it), so a failed announcement is
	// logged, not an error: the plain key must reach the caller.
	_ = s.announce(ctx, api.Change{Kind: api.KindKey, Op: "created", PartnerID: k.PartnerID, KeyID: id})
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
// A revoked key cannot be changed; the write is conditional on the version
// read, so a concurrent revoke is never overwritten.
func (s *Service) updateKey(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkName(r.Name, false, &fields)
	k, err := transact(func() (tenant.APIKey, error) {
		_, k, err := s.key(ctx, r)
		if err != nil {
			return k, err
		}
		if k.Status == tenant.KeyRevoked {
			return k, apierr.New(apierr.KeyRevoked, "the key is revoked and cannot be changed; create a new key")
		}
		f := append([]apierr.FieldError(nil), fields...)
		if err := s.keySettings(ctx, &k, r, &f); err != nil {
			return k, err
		}
		if err := s.store.UpdateAPIKey(ctx, k); err != nil {
			return k, err
		}
		k.Version++
		return k, nil
	})
	if err != nil {
		return nil, storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	if err := s.announce(ctx, api.Change{Kind: api.KindKey, Op: "updated", PartnerID: k.PartnerID, KeyID: k.ID}); err != nil {
		return nil, err
	}
	return k.View(), nil
}

// touchKey records a sampled last use.
func (s *Service) touchKey(ctx context.Context, r api.Request) (any, error) {
	if !tenant.ValidKeyID(r.KeyID) || r.At == nil || !instant.Valid(*r.At) {
		return nil, apierr.New(apierr.InvalidParameter, "keyId and at (%s) are required", instant.Range)
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

// revoke makes a key unusable: a conditional write, re-decided on the
// latest record when it races another change. Revoking a revoked key
// changes nothing and announces it again.
func (s *Service) revoke(ctx context.Context, partnerID, keyID string) error {
	_, err := transact(func() (struct{}, error) {
		k, err := s.store.GetAPIKey(ctx, keyID)
		if err != nil || k.Status == tenant.KeyRevoked {
			return struct{}{}, err
		}
		now := s.now().UTC()
		k.Status, k.RevokedAt = tenant.KeyRevoked, &now
		return struct{}{}, s.store.UpdateAPIKey(ctx, k)
	})
	if err != nil {
		return storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	return s.announce(ctx, api.Change{Kind: api.KindKey, Op: "revoked", PartnerID: partnerID, KeyID: keyID})
}

func (s *Service) revokeKey(ctx context.Context, r api.Request) (any, error) {
	_, k, err := s.key(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := s.revoke(ctx, k.PartnerID, k.ID); err != nil {
		return nil, err
	}
	k, err = s.store.GetAPIKey(ctx, k.ID)
	return k.View(), storeErr(err, apierr.APIKeyNotFound, "API key")
}

// MaxGrace bounds how long a rotated key keeps working.
const MaxGrace = 30 * 24 * time.Hour

// replacementExpiry is the expiry of a regenerated key when the request
// sets none: the old key's expiry while it is in the future; once it has
// passed, the old key's lifetime (expiry minus creation) counted from now.
// A key that never expired is replaced by one that never expires.
func replacementExpiry(k tenant.APIKey, now time.Time) *time.Time {
	if k.ExpiresAt == nil {
		return nil
	}
	if k.ExpiresAt.After(now) {
		e := *k.ExpiresAt
		return &e
	}
	life := k.ExpiresAt.Sub(k.CreatedAt)
	if life < time.Minute {
		life = time.Minute
	}
	e := now.Add(life).UTC()
	if !instant.Valid(e) {
		e = instant.Max.Add(-time.Second)
	}
	return &e
}

// regenerateKey issues a replacement with the old key's settings (name and
// expiry unless the request sets them; see replacementExpiry) and retires
// the old key: revoked at once, or, with graceSeconds, working until the
// grace period ends. The rules:
//   - a revoked key cannot be regenerated (409 key_revoked);
//   - a key is rotated once: a key already regenerated, in its grace period
//     or not, answers 409 key_rotated naming its replacement;
//   - the old key is retired by a conditional write on the version read, so
//     a concurrent revoke or regenerate wins or loses as a whole: the loser
//     revokes the replacement it made, which nobody has seen.
func (s *Service) regenerateKey(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkName(r.Name, false, &fields)
	// Compared in seconds: multiplied first, a huge value would wrap around.
	if r.GraceSeconds != nil && (*r.GraceSeconds < 0 || int64(*r.GraceSeconds) > int64(MaxGrace/time.Second)) {
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
	if err := regenerable(k); err != nil {
		return nil, err
	}
	next := k
	next.ExpiresAt = replacementExpiry(k, s.now())
	if r.Name != nil {
		next.Name = *r.Name
	}
	if r.ExpiredAt != nil {
		next.ExpiresAt = utc(r.ExpiredAt)
	}
	created, err := s.newKey(ctx, next)
	if err != nil {
		return nil, err
	}
	grace := time.Duration(0)
	if r.GraceSeconds != nil {
		grace = time.Duration(*r.GraceSeconds) * time.Second
	}
	op := "revoked"
	_, err = transact(func() (struct{}, error) {
		old, err := s.store.GetAPIKey(ctx, k.ID)
		if err != nil {
			return struct{}{}, err
		}
		if err := regenerable(old); err != nil {
			return struct{}{}, err
		}
		now := s.now().UTC()
		old.ReplacedBy = created.ID
		if grace == 0 || !old.Usable(now) {
			old.Status, old.RevokedAt, op = tenant.KeyRevoked, &now, "revoked"
		} else if end := now.Add(grace); old.ExpiresAt == nil || end.Before(*old.ExpiresAt) {
			old.ExpiresAt, op = &end, "rotated" // still works until then, on every edge
		}
		return struct{}{}, s.store.UpdateAPIKey(ctx, old)
	})
	if err != nil {
		// Lost to a concurrent change of the old key: the replacement was
		// never shown to anyone; retire it.
		if rerr := s.revoke(ctx, created.PartnerID, created.ID); rerr != nil {
			s.log.Warn().Err(rerr).Str("key_id", created.ID).Msg("unshown replacement key not revoked")
		}
		return nil, storeErr(err, apierr.APIKeyNotFound, "API key")
	}
	if err := s.announce(ctx, api.Change{Kind: api.KindKey, Op: op, PartnerID: k.PartnerID, KeyID: k.ID}); err != nil {
		// The replacement must reach the caller; the old key's retirement
		// is stored and will be announced by a repeat revoke.
		created.PropagationPending = true
	}
	return created, nil
}

// regenerable is the rule of what may be regenerated.
func regenerable(k tenant.APIKey) error {
	switch {
	case k.Status == tenant.KeyRevoked:
		return apierr.New(apierr.KeyRevoked, "a revoked key cannot be regenerated; create a new key")
	case k.ReplacedBy != "":
		return apierr.New(apierr.KeyRotated, "the key was regenerated already, as key %s; regenerate that one", k.ReplacedBy)
	}
	return nil
}

func (s *Service) authKey(ctx context.Context, r api.Request) (any, error) {
	if !tenant.ValidKeyID(r.KeyID) {
		return nil, apierr.New(apierr.APIKeyNotFound, "API key not found")
	}
	k, err := s.store.GetAPIKey(ctx, r.KeyID)
	if err == nil && s.cache != nil {
		_, _ = s.cache.SetVersioned(ctx, rcache.KeyOfAPIKey(k.ID), k.Version, k, s.sharedTTL)
	}
	return k, storeErr(err, apierr.APIKeyNotFound, "API key")
}

func (s *Service) snapshot(ctx context.Context, partnerID string) (api.PartnerSnapshot, error) {
	p, err := s.partner(ctx, partnerID)
	if err != nil {
		return api.PartnerSnapshot{}, err
	}
	all, err := s.store.ListSubSystems(ctx, p.ID, true)
	if err != nil {
		return api.PartnerSnapshot{}, err
	}
	snap := api.PartnerSnapshot{Partner: p, SubSystems: []tenant.SubSystem{}, Version: p.Version}
	for _, ss := range all {
		snap.Version += ss.Version // deleted ones too: the sum never goes back
		if ss.Status != tenant.Deleted {
			snap.SubSystems = append(snap.SubSystems, ss)
		}
	}
	return snap, nil
}

func (s *Service) authPartner(ctx context.Context, r api.Request) (any, error) {
	snap, err := s.snapshot(ctx, r.PartnerID)
	if err == nil && s.cache != nil {
		_, _ = s.cache.SetVersioned(ctx, rcache.KeyOfPartner(r.PartnerID), snap.Version, snap, s.sharedTTL)
	}
	return snap, err
}
