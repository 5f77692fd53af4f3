package reporter

import (
	"context"
	"sync"
	"time"

	"github.com/volcanion/tracking/shared/tenant"
)

// recordFor is how long a partner's or sub-system's record read for a
// report is used again: a renamed sub-system or a changed retention shows
// within it (a cached report may show an old name for longer). A
// sub-system never changes partner, so the access checks it serves hold
// whatever its age. On Cassandra a sub-system is two statements of a
// hourly report's eleven.
const recordFor = time.Minute

// maxRecords bounds each cache: past it, it starts again empty.
const maxRecords = 1 << 14

// records keeps records read lately, by id. Errors (not found included)
// are not kept.
type records[T any] struct {
	mu sync.Mutex
	m  map[string]record[T]
}

type record[T any] struct {
	v  T
	at time.Time
}

func (r *records[T]) get(ctx context.Context, id string, now time.Time, read func(context.Context, string) (T, error)) (T, error) {
	r.mu.Lock()
	e, ok := r.m[id]
	r.mu.Unlock()
	if ok && now.Sub(e.at) < recordFor && !now.Before(e.at) {
		return e.v, nil
	}
	v, err := read(ctx, id)
	if err != nil {
		return v, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxRecords {
		r.m = map[string]record[T]{}
	}
	r.m[id] = record[T]{v, now}
	return v, nil
}

// subSystem is a sub-system's record, read at most once a recordFor.
func (s *Service) subSystem(ctx context.Context, id string) (tenant.SubSystem, error) {
	return s.subs.get(ctx, id, s.now(), s.store.GetSubSystem)
}

// partner is a partner's record, read at most once a recordFor.
func (s *Service) partner(ctx context.Context, id string) (tenant.Partner, error) {
	return s.partners.get(ctx, id, s.now(), s.store.GetPartner)
}
