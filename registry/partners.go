package registry

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/volcanion/tracking/shared/apierr"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Page size bounds of listings.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
	// MaxPage keeps (page-1)*pageSize far from overflowing.
	MaxPage = 1_000_000
)

func checkID(id, field string) error {
	if !tenant.ValidID(id) {
		return apierr.Invalid(apierr.FieldError{Field: field, Message: "must be a UUID"})
	}
	return nil
}

func checkCode(code *string, required bool, fields *[]apierr.FieldError) {
	if code == nil {
		if required {
			*fields = append(*fields, apierr.FieldError{Field: "code", Message: "is required"})
		}
		return
	}
	*code = strings.TrimSpace(*code)
	if !tenant.ValidCode(*code) {
		*fields = append(*fields, apierr.FieldError{Field: "code", Message: "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"})
	}
}

func checkName(name *string, required bool, fields *[]apierr.FieldError) {
	if name == nil {
		if required {
			*fields = append(*fields, apierr.FieldError{Field: "name", Message: "is required"})
		}
		return
	}
	*name = strings.TrimSpace(*name)
	if *name == "" || utf8.RuneCountInString(*name) > tenant.MaxNameLen {
		*fields = append(*fields, apierr.FieldError{Field: "name", Message: "must be 1-200 characters"})
	}
}

// checkStatus accepts the statuses an update may set: deleting has its own route.
func checkStatus(status *string, fields *[]apierr.FieldError) {
	if status == nil {
		return
	}
	if s := tenant.Status(*status); s != tenant.Active && s != tenant.Inactive {
		*fields = append(*fields, apierr.FieldError{Field: "status", Message: "must be Active or Inactive (use DELETE to delete)"})
	}
}

// MaxRateLimit bounds a rate-limit override, in events per second.
const MaxRateLimit = 1_000_000

func checkRateLimit(n *int, fields *[]apierr.FieldError) {
	if n != nil && (*n < 0 || *n > MaxRateLimit) {
		*fields = append(*fields, apierr.FieldError{Field: "rateLimit", Message: "must be 0 (the default) to 1000000 events per second"})
	}
}

func checkRetention(days *int, fields *[]apierr.FieldError) {
	if days != nil && (*days < 1 || *days > tenant.MaxRetentionDays) {
		*fields = append(*fields, apierr.FieldError{Field: "retentionDays", Message: "must be 1-3650 days"})
	}
}

// applySettings copies the partner settings a request carries.
func applySettings(p *tenant.Partner, r api.Request) {
	if r.RetentionDays != nil {
		p.RetentionDays = *r.RetentionDays
	}
	if r.RateLimit != nil {
		p.RateLimit = *r.RateLimit
	}
	if r.RequireSignature != nil {
		p.RequireSignature = *r.RequireSignature
	}
}

func (s *Service) partner(ctx context.Context, id string) (tenant.Partner, error) {
	if err := checkID(id, "partnerId"); err != nil {
		return tenant.Partner{}, err
	}
	p, err := s.store.GetPartner(ctx, id)
	return p, storeErr(err, apierr.PartnerNotFound, "partner")
}

// livePartner is a partner that may still be changed: not deleted.
func (s *Service) livePartner(ctx context.Context, id string) (tenant.Partner, error) {
	p, err := s.partner(ctx, id)
	if err == nil && p.Status == tenant.Deleted {
		err = apierr.New(apierr.PartnerDeleted, "partner %s is deleted", id)
	}
	return p, err
}

func (s *Service) listPartners(ctx context.Context, r api.Request) (any, error) {
	if r.Page == 0 {
		r.Page = 1
	}
	if r.PageSize == 0 {
		r.PageSize = DefaultPageSize
	}
	if r.Page < 1 {
		return nil, apierr.New(apierr.InvalidParameter, "page must be 1 or more")
	}
	if r.PageSize < 1 || r.PageSize > MaxPageSize {
		return nil, apierr.New(apierr.InvalidParameter, "pageSize must be between 1 and %d", MaxPageSize)
	}
	if r.Page > MaxPage {
		return nil, apierr.New(apierr.InvalidParameter, "page must be at most %d", MaxPage)
	}
	items, total, err := s.store.ListPartners(ctx, storage.Page{Offset: (r.Page - 1) * r.PageSize, Limit: r.PageSize, IncludeDeleted: r.IncludeDeleted})
	if err != nil {
		return nil, err
	}
	return api.PartnerPage{Data: items, Page: r.Page, PageSize: r.PageSize, TotalCount: total,
		TotalPages: (total + r.PageSize - 1) / r.PageSize}, nil
}

func (s *Service) getPartner(ctx context.Context, r api.Request) (any, error) {
	return s.partner(ctx, r.PartnerID)
}

func (s *Service) partnerByCode(ctx context.Context, r api.Request) (any, error) {
	if r.Code == nil || *r.Code == "" {
		return nil, apierr.Invalid(apierr.FieldError{Field: "code", Message: "is required"})
	}
	p, err := s.store.GetPartnerByCode(ctx, *r.Code)
	return p, storeErr(err, apierr.PartnerNotFound, "partner")
}

func (s *Service) createPartner(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkCode(r.Code, true, &fields)
	checkName(r.Name, true, &fields)
	checkRetention(r.RetentionDays, &fields)
	checkRateLimit(r.RateLimit, &fields)
	if len(fields) > 0 {
		return nil, apierr.Invalid(fields...)
	}
	now := s.now().UTC()
	p := tenant.Partner{ID: tenant.NewID(), Code: *r.Code, Name: *r.Name, Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	applySettings(&p, r)
	if err := s.store.CreatePartner(ctx, p); err != nil {
		return nil, storeErr(err, apierr.PartnerNotFound, "partner")
	}
	_ = s.announce(ctx, api.Change{Kind: api.KindPartner, Op: "created", PartnerID: p.ID}) // new: in no cache yet
	return p, nil
}

// changePartner applies change to the live partner as a conditional write,
// re-read and re-applied when a concurrent change wins the race, then
// announces it.
func (s *Service) changePartner(ctx context.Context, id, op string, change func(*tenant.Partner)) (any, error) {
	p, err := transact(func() (tenant.Partner, error) {
		p, err := s.livePartner(ctx, id)
		if err != nil {
			return p, err
		}
		change(&p)
		p.UpdatedAt = s.now().UTC()
		if err := s.store.UpdatePartner(ctx, p); err != nil {
			return p, err
		}
		p.Version++
		return p, nil
	})
	if err != nil {
		return nil, storeErr(err, apierr.PartnerNotFound, "partner")
	}
	if err := s.announce(ctx, api.Change{Kind: api.KindPartner, Op: op, PartnerID: p.ID}); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Service) updatePartner(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkCode(r.Code, false, &fields)
	checkName(r.Name, false, &fields)
	checkStatus(r.Status, &fields)
	checkRetention(r.RetentionDays, &fields)
	checkRateLimit(r.RateLimit, &fields)
	if len(fields) > 0 {
		return nil, apierr.Invalid(fields...)
	}
	return s.changePartner(ctx, r.PartnerID, "updated", func(p *tenant.Partner) {
		if r.Code != nil {
			p.Code = *r.Code
		}
		if r.Name != nil {
			p.Name = *r.Name
		}
		if r.Status != nil {
			p.Status = tenant.Status(*r.Status)
		}
		applySettings(p, r)
	})
}

func (s *Service) togglePartner(ctx context.Context, r api.Request) (any, error) {
	return s.changePartner(ctx, r.PartnerID, "toggled", func(p *tenant.Partner) {
		if p.Status == tenant.Active {
			p.Status = tenant.Inactive
		} else {
			p.Status = tenant.Active
		}
	})
}

// deletePartner soft-deletes a partner and disables everything it owns: its
// keys are revoked and its sub-systems made inactive, so nothing of a deleted
// partner can ingest even if a cached entry survived. The partner is marked
// first (a conditional write: a concurrent toggle or update cannot bring it
// back), then its keys and sub-systems are swept; a key created meanwhile
// revokes itself (newKey). Deleting a deleted partner sweeps and announces
// again, so a delete interrupted half-way is finished by a repeat.
func (s *Service) deletePartner(ctx context.Context, r api.Request) (any, error) {
	p, err := transact(func() (tenant.Partner, error) {
		p, err := s.partner(ctx, r.PartnerID)
		if err != nil || p.Status == tenant.Deleted {
			return p, err
		}
		p.Status, p.UpdatedAt = tenant.Deleted, s.now().UTC()
		if err := s.store.UpdatePartner(ctx, p); err != nil {
			return p, err
		}
		p.Version++
		return p, nil
	})
	if err != nil {
		return nil, storeErr(err, apierr.PartnerNotFound, "partner")
	}
	keys, err := s.store.ListAPIKeys(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.Status != tenant.KeyActive {
			continue
		}
		if _, err := transact(func() (struct{}, error) {
			k, err := s.store.GetAPIKey(ctx, k.ID)
			if err != nil || k.Status == tenant.KeyRevoked {
				return struct{}{}, err
			}
			now := s.now().UTC()
			k.Status, k.RevokedAt = tenant.KeyRevoked, &now
			return struct{}{}, s.store.UpdateAPIKey(ctx, k)
		}); err != nil {
			return nil, storeErr(err, apierr.APIKeyNotFound, "API key")
		}
	}
	subs, err := s.store.ListSubSystems(ctx, p.ID, false)
	if err != nil {
		return nil, err
	}
	for _, ss := range subs {
		if _, err := transact(func() (struct{}, error) {
			ss, err := s.store.GetSubSystem(ctx, ss.ID)
			if err != nil || ss.Status != tenant.Active {
				return struct{}{}, err
			}
			ss.Status, ss.UpdatedAt = tenant.Inactive, s.now().UTC()
			return struct{}{}, s.store.UpdateSubSystem(ctx, ss)
		}); err != nil {
			return nil, storeErr(err, apierr.SubSystemNotFound, "sub-system")
		}
	}
	if err := s.announce(ctx, api.Change{Kind: api.KindPartner, Op: "deleted", PartnerID: p.ID}); err != nil {
		return nil, err
	}
	return p, nil
}
