package storage

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/tenant"
)

// Traced wraps a store so that every call is a span under its caller's:
// the registry's, reporter's and workers' traces reach storage.
func Traced(s Store) Store { return traced{s} }

type traced struct{ s Store }

func span(ctx context.Context, op string) (context.Context, trace.Span) {
	return otel.Tracer("storage").Start(ctx, "storage "+op, trace.WithSpanKind(trace.SpanKindClient))
}

func end(sp trace.Span, err error) {
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

func (t traced) CreatePartner(ctx context.Context, p tenant.Partner) (err error) {
	ctx, sp := span(ctx, "CreatePartner")
	defer func() { end(sp, err) }()
	return t.s.CreatePartner(ctx, p)
}

func (t traced) UpdatePartner(ctx context.Context, p tenant.Partner) (err error) {
	ctx, sp := span(ctx, "UpdatePartner")
	defer func() { end(sp, err) }()
	return t.s.UpdatePartner(ctx, p)
}

func (t traced) GetPartner(ctx context.Context, id string) (_ tenant.Partner, err error) {
	ctx, sp := span(ctx, "GetPartner")
	defer func() { end(sp, err) }()
	return t.s.GetPartner(ctx, id)
}

func (t traced) GetPartnerByCode(ctx context.Context, code string) (_ tenant.Partner, err error) {
	ctx, sp := span(ctx, "GetPartnerByCode")
	defer func() { end(sp, err) }()
	return t.s.GetPartnerByCode(ctx, code)
}

func (t traced) ListPartners(ctx context.Context, page Page) (_ []tenant.Partner, _ int, err error) {
	ctx, sp := span(ctx, "ListPartners")
	defer func() { end(sp, err) }()
	return t.s.ListPartners(ctx, page)
}

func (t traced) CreateSubSystem(ctx context.Context, s tenant.SubSystem) (err error) {
	ctx, sp := span(ctx, "CreateSubSystem")
	defer func() { end(sp, err) }()
	return t.s.CreateSubSystem(ctx, s)
}

func (t traced) UpdateSubSystem(ctx context.Context, s tenant.SubSystem) (err error) {
	ctx, sp := span(ctx, "UpdateSubSystem")
	defer func() { end(sp, err) }()
	return t.s.UpdateSubSystem(ctx, s)
}

func (t traced) GetSubSystem(ctx context.Context, id string) (_ tenant.SubSystem, err error) {
	ctx, sp := span(ctx, "GetSubSystem")
	defer func() { end(sp, err) }()
	return t.s.GetSubSystem(ctx, id)
}

func (t traced) GetSubSystemByCode(ctx context.Context, partnerID, code string) (_ tenant.SubSystem, err error) {
	ctx, sp := span(ctx, "GetSubSystemByCode")
	defer func() { end(sp, err) }()
	return t.s.GetSubSystemByCode(ctx, partnerID, code)
}

func (t traced) ListSubSystems(ctx context.Context, partnerID string, includeDeleted bool) (_ []tenant.SubSystem, err error) {
	ctx, sp := span(ctx, "ListSubSystems")
	defer func() { end(sp, err) }()
	return t.s.ListSubSystems(ctx, partnerID, includeDeleted)
}

func (t traced) CreateAPIKey(ctx context.Context, k tenant.APIKey) (err error) {
	ctx, sp := span(ctx, "CreateAPIKey")
	defer func() { end(sp, err) }()
	return t.s.CreateAPIKey(ctx, k)
}

func (t traced) UpdateAPIKey(ctx context.Context, k tenant.APIKey) (err error) {
	ctx, sp := span(ctx, "UpdateAPIKey")
	defer func() { end(sp, err) }()
	return t.s.UpdateAPIKey(ctx, k)
}

func (t traced) GetAPIKey(ctx context.Context, id string) (_ tenant.APIKey, err error) {
	ctx, sp := span(ctx, "GetAPIKey")
	defer func() { end(sp, err) }()
	return t.s.GetAPIKey(ctx, id)
}

func (t traced) TouchAPIKey(ctx context.Context, id string, at time.Time) (err error) {
	ctx, sp := span(ctx, "TouchAPIKey")
	defer func() { end(sp, err) }()
	return t.s.TouchAPIKey(ctx, id, at)
}

func (t traced) ListAPIKeys(ctx context.Context, partnerID string) (_ []tenant.APIKey, err error) {
	ctx, sp := span(ctx, "ListAPIKeys")
	defer func() { end(sp, err) }()
	return t.s.ListAPIKeys(ctx, partnerID)
}

func (t traced) WriteEvents(ctx context.Context, events []event.Event) (_ WriteResult, err error) {
	ctx, sp := span(ctx, "WriteEvents")
	defer func() { end(sp, err) }()
	return t.s.WriteEvents(ctx, events)
}

func (t traced) GetEvent(ctx context.Context, partnerID, id string) (_ event.Event, err error) {
	ctx, sp := span(ctx, "GetEvent")
	defer func() { end(sp, err) }()
	return t.s.GetEvent(ctx, partnerID, id)
}

func (t traced) Counts(ctx context.Context, q CountsQuery) ([]Slot, error) {
	return tracedReads{t.s}.Counts(ctx, q)
}

func (t traced) CountsEach(ctx context.Context, qs []CountsQuery) ([][]Slot, error) {
	return tracedReads{t.s}.CountsEach(ctx, qs)
}

func (t traced) Users(ctx context.Context, q UsersQuery, fn func(start time.Time, sketch []byte) error) error {
	return tracedReads{t.s}.Users(ctx, q, fn)
}

func (t traced) UserEstimates(ctx context.Context, q UsersQuery, fn func(start time.Time, users uint64) error) error {
	return tracedReads{t.s}.UserEstimates(ctx, q, fn)
}

// ReadView is the store's view, traced; the store itself, read live, when
// it has none.
func (t traced) ReadView() (Reads, func()) {
	if v, ok := t.s.(ReadViewer); ok {
		r, release := v.ReadView()
		return tracedReads{r}, release
	}
	return t, func() {}
}

type tracedReads struct{ r Reads }

func (t tracedReads) Counts(ctx context.Context, q CountsQuery) (_ []Slot, err error) {
	ctx, sp := span(ctx, "Counts")
	defer func() { end(sp, err) }()
	return t.r.Counts(ctx, q)
}

func (t tracedReads) CountsEach(ctx context.Context, qs []CountsQuery) (_ [][]Slot, err error) {
	if _, ok := t.r.(CountsEacher); !ok {
		out := make([][]Slot, len(qs))
		for i, q := range qs { // each traced
			if out[i], err = t.Counts(ctx, q); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	ctx, sp := span(ctx, "CountsEach")
	defer func() { end(sp, err) }()
	return CountsEach(ctx, t.r, qs)
}

func (t tracedReads) Users(ctx context.Context, q UsersQuery, fn func(start time.Time, sketch []byte) error) (err error) {
	ctx, sp := span(ctx, "Users")
	defer func() { end(sp, err) }()
	return t.r.Users(ctx, q, fn)
}

func (t tracedReads) UserEstimates(ctx context.Context, q UsersQuery, fn func(start time.Time, users uint64) error) (err error) {
	ctx, sp := span(ctx, "UserEstimates")
	defer func() { end(sp, err) }()
	return t.r.UserEstimates(ctx, q, fn)
}

func (t traced) UnionEstimates(ctx context.Context, q UnionsQuery, fn func(i int, users uint64) error) error {
	return tracedReads{t.s}.UnionEstimates(ctx, q, fn)
}

func (t traced) UnionCounts(ctx context.Context, q UnionCountsQuery, fn func(i int, n int64) error) error {
	return tracedReads{t.s}.UnionCounts(ctx, q, fn)
}

func (t tracedReads) UnionEstimates(ctx context.Context, q UnionsQuery, fn func(i int, users uint64) error) (err error) {
	u, ok := t.r.(UnionReader)
	if !ok {
		return errors.ErrUnsupported
	}
	ctx, sp := span(ctx, "UnionEstimates")
	defer func() { end(sp, err) }()
	return u.UnionEstimates(ctx, q, fn)
}

func (t traced) UnionSketches(ctx context.Context, q UnionsQuery, fn func(i int, sketch []byte) error) error {
	return tracedReads{t.s}.UnionSketches(ctx, q, fn)
}

func (t tracedReads) UnionSketches(ctx context.Context, q UnionsQuery, fn func(i int, sketch []byte) error) (err error) {
	u, ok := t.r.(UnionReader)
	if !ok {
		return errors.ErrUnsupported
	}
	ctx, sp := span(ctx, "UnionSketches")
	defer func() { end(sp, err) }()
	return u.UnionSketches(ctx, q, fn)
}

func (t tracedReads) UnionCounts(ctx context.Context, q UnionCountsQuery, fn func(i int, n int64) error) (err error) {
	u, ok := t.r.(UnionReader)
	if !ok {
		return errors.ErrUnsupported
	}
	ctx, sp := span(ctx, "UnionCounts")
	defer func() { end(sp, err) }()
	return u.UnionCounts(ctx, q, fn)
}

func (t traced) ListEvents(ctx context.Context, q EventsQuery) (_ []event.Event, err error) {
	ctx, sp := span(ctx, "ListEvents")
	defer func() { end(sp, err) }()
	return t.s.ListEvents(ctx, q)
}

func (t traced) Retention(p tenant.Partner) time.Duration { return t.s.Retention(p) }

func (t traced) Ping(ctx context.Context) (err error) {
	ctx, sp := span(ctx, "Ping")
	defer func() { end(sp, err) }()
	return t.s.Ping(ctx)
}

func (t traced) Close() error { return t.s.Close() }

func (t traced) KeepsUsers(sc UserScope, from time.Time) bool { return KeepsUsers(t.s, sc, from) }
