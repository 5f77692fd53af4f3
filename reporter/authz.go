package reporter

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
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

// partnerOfKey verifies a partner's API key (keyauth: the registry
// vouches for it, cached keyauth.TTL) and returns what it may read.
func (s *Service) partnerOfKey(ctx context.Context, raw string) (confinement, error) {
	c, err := s.keys.Check(ctx, raw, tenant.ScopeReport)
	if err != nil {
		return confinement{}, err
	}
	return confinement{partner: c.Partner, sub: c.SubSystem}, nil
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
