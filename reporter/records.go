package reporter

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/volcanion/tracking/shared/tenant"
)

// recordFor is how long a partner's or sub-system's record read for a
// report is used again. The reporter follows the registry's changes and
// forgets a changed record at once (Service.changed); recordFor bounds how
// long a change missed (the changes stream unreachable) shows an old name
// or retention. A sub-system never changes partner, so the access checks
// it serves hold whatever its age. On Cassandra a sub-system is two
// statements of an hourly report's eleven, and a partner's sub-systems (the
// names of its top list) one of a daily partner report's five.
const recordFor = time.Minute

// maxRecords bounds each cache: past it, it starts again empty.
const maxRecords = 1 << 14

// maxLists bounds the partners whose sub-systems are kept (a list may name
// thousands, deleted ones too).
const maxLists = 1 << 10

// records keeps records read lately, by id. Errors (not found included)
// are not kept.
type records[T any] struct {
	// max bounds the records kept (0: maxRecords).
	max int
	mu  sync.Mutex
	m   map[string]record[T]
	// epoch counts forgets: a read begun before one is not kept (it may
	// hold what the change replaced).
	epoch uint64
}

type record[T any] struct {
	v  T
	at time.Time
}

func (r *records[T]) get(ctx context.Context, id string, now time.Time, read func(context.Context, string) (T, error)) (T, error) {
	r.mu.Lock()
	e, ok := r.m[id]
	epoch := r.epoch
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
	if r.epoch != epoch {
		return v, nil // a change came during the read: used, not kept
	}
	if limit := cmp.Or(r.max, maxRecords); r.m == nil || len(r.m) >= limit {
		r.m = map[string]record[T]{}
	}
	r.m[id] = record[T]{v, now}
	return v, nil
}

// forget drops the records of ids, and keeps no read begun before.
func (r *records[T]) forget(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epoch++
	for _, id := range ids {
		delete(r.m, id)
	}
}

// subSystem is a sub-system's record, read at most once a recordFor.
func (s *Service) subSystem(ctx context.Context, id string) (tenant.SubSystem, error) {
	return s.subs.get(ctx, id, s.now(), s.store.GetSubSystem)
}

// partner is a partner's record, read at most once a recordFor.
func (s *Service) partner(ctx context.Context, id string) (tenant.Partner, error) {
	return s.partners.get(ctx, id, s.now(), s.store.GetPartner)
}
