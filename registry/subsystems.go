package registry

import (
	"context"

	"github.com/volcanion/tracking/shared/apierr"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/tenant"
)

// subSystem finds a sub-system and checks it belongs to the partner: a
// sub-system of another partner is reported as not found, never shown.
func (s *Service) subSystem(ctx context.Context, r api.Request) (tenant.Partner, tenant.SubSystem, error) {
	p, err := s.partner(ctx, r.PartnerID)
	if err != nil {
		return p, tenant.SubSystem{}, err
	}
	if err := checkID(r.SubSystemID, "subSystemId"); err != nil {
		return p, tenant.SubSystem{}, err
	}
	ss, err := s.store.GetSubSystem(ctx, r.SubSystemID)
	if err == nil && ss.PartnerID != p.ID {
		return p, ss, apierr.New(apierr.SubSystemNotFound, "sub-system not found")
	}
	return p, ss, storeErr(err, apierr.SubSystemNotFound, "sub-system")
}

// liveSubSystem is a sub-system that may still be changed, of a partner that is not deleted.
func (s *Service) liveSubSystem(ctx context.Context, r api.Request) (tenant.SubSystem, error) {
	p, ss, err := s.subSystem(ctx, r)
	switch {
	case err != nil:
	case p.Status == tenant.Deleted:
		err = apierr.New(apierr.PartnerDeleted, "partner %s is deleted", p.ID)
	case ss.Status == tenant.Deleted:
		err = apierr.New(apierr.SubSystemDeleted, "sub-system %s is deleted", ss.ID)
	}
	return ss, err
}

func (s *Service) createSubSystem(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkCode(r.Code, true, &fields)
	checkName(r.Name, true, &fields)
	if len(fields) > 0 {
		return nil, apierr.Invalid(fields...)
	}
	p, err := s.livePartner(ctx, r.PartnerID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: *r.Code, Name: *r.Name, Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := s.store.CreateSubSystem(ctx, ss); err != nil {
		return nil, storeErr(err, apierr.SubSystemNotFound, "sub-system of this partner")
	}
	// Created while the partner was being deleted: the delete's sweep may
	// have missed it, so make it inactive as the sweep would have.
	if p, err := s.store.GetPartner(ctx, p.ID); err == nil && p.Status == tenant.Deleted {
		_, _ = transact(func() (struct{}, error) {
			cur, err := s.store.GetSubSystem(ctx, ss.ID)
			if err != nil || cur.Status != tenant.Active {
				return struct{}{}, err
			}
			cur.Status = tenant.Inactive
			return struct{}{}, s.store.UpdateSubSystem(ctx, cur)
		})
		return nil, apierr.New(apierr.PartnerDeleted, "partner %s is deleted", p.ID)
	}
	if err := s.announce(ctx, api.Change{Kind: api.KindSubSystem, Op: "created", PartnerID: p.ID, SubSystemID: ss.ID}); err != nil {
		return nil, err
	}
	return ss, nil
}
func (s *Service) listSubSystems(ctx context.Context, r api.Request) (any, error) {
	p, err := s.partner(ctx, r.PartnerID)
	if err != nil {
		return nil, err
	}
	return s.store.ListSubSystems(ctx, p.ID, r.IncludeDeleted)
}

// allSubSystems lists the live sub-systems of every live partner (the
// reference's GET /sub-systems).
func (s *Service) allSubSystems(ctx context.Context, r api.Request) (any, error) {
	out := []tenant.SubSystem{}
	for page := 0; ; page++ {
		ps, _, err := s.store.ListPartners(ctx, pageOf(page))
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			subs, err := s.store.ListSubSystems(ctx, p.ID, false)
			if err != nil {
				return nil, err
			}
			out = append(out, subs...)
		}
		if len(ps) < MaxPageSize {
			return out, nil
		}
	}
}

func (s *Service) getSubSystem(ctx context.Context, r api.Request) (any, error) {
	_, ss, err := s.subSystem(ctx, r)
	return ss, err
}

func (s *Service) subSystemByCode(ctx context.Context, r api.Request) (any, error) {
	p, err := s.partner(ctx, r.PartnerID)
	if err != nil {
		return nil, err
	}
	if r.Code == nil || *r.Code == "" {
		return nil, apierr.Invalid(apierr.FieldError{Field: "code", Message: "is required"})
	}
	ss, err := s.store.GetSubSystemByCode(ctx, p.ID, *r.Code)
	return ss, storeErr(err, apierr.SubSystemNotFound, "sub-system")
}

func (s *Service) updateSubSystem(ctx context.Context, r api.Request) (any, error) {
	var fields []apierr.FieldError
	checkCode(r.Code, false, &fields)
	checkName(r.Name, false, &fields)
	checkStatus(r.Status, &fields)
	if len(fields) > 0 {
		return nil, apierr.Invalid(fields...)
	}
	return s.changeSubSystem(ctx, r, "updated", true, func(ss *tenant.SubSystem) {
		if r.Code != nil {
			ss.Code = *r.Code
		}
		if r.Name != nil {
			ss.Name = *r.Name
		}
		if r.Status != nil {
			ss.Status = tenant.Status(*r.Status)
		}
	})
}

// changeSubSystem applies change as a conditional write, re-read and
// re-applied when a concurrent change wins the race, then announces it.
// live: the sub-system and its partner must not be deleted.
func (s *Service) changeSubSystem(ctx context.Context, r api.Request, op string, live bool, change func(*tenant.SubSystem)) (any, error) {
	ss, err := transact(func() (tenant.SubSystem, error) {
		var ss tenant.SubSystem
		var err error
		if live {
			ss, err = s.liveSubSystem(ctx, r)
		} else {
			_, ss, err = s.subSystem(ctx, r)
		}
		if err != nil {
			return ss, err
		}
		change(&ss)
		ss.UpdatedAt = s.now().UTC()
		if err := s.store.UpdateSubSystem(ctx, ss); err != nil {
			return ss, err
		}
		ss.Version++
		return ss, nil
	})
	if err != nil {
		return nil, storeErr(err, apierr.SubSystemNotFound, "sub-system of this partner")
	}
	if err := s.announce(ctx, api.Change{Kind: api.KindSubSystem, Op: op, PartnerID: ss.PartnerID, SubSystemID: ss.ID}); err != nil {
		return nil, err
	}
	return ss, nil
}

// deleteSubSystem is idempotent: deleting a deleted sub-system changes
// nothing and announces it again.
func (s *Service) deleteSubSystem(ctx context.Context, r api.Request) (any, error) {
	return s.changeSubSystem(ctx, r, "deleted", false, func(ss *tenant.SubSystem) { ss.Status = tenant.Deleted })
}

func (s *Service) toggleSubSystem(ctx context.Context, r api.Request) (any, error) {
	return s.changeSubSystem(ctx, r, "toggled", true, func(ss *tenant.SubSystem) {
		if ss.Status == tenant.Active {
			ss.Status = tenant.Inactive
		} else {
			ss.Status = tenant.Active
		}
	})
}
