package rcache

import (
	"container/list"
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Local is an in-process cache with the Get/Set of Cache, for a process
// without Redis (the all-in-one): values are kept as JSON, as Redis keeps
// them, so a Get is a copy (GetBytes shares the stored bytes, for a value
// that is already the answer); the least recently used go first once the
// entries exceed maxBytes.
type Local struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	order    *list.List // front: most recently used
	entries  map[string]*list.Element
	gens     map[string]int64 // one per partner and sub-system: few
	now      func() time.Time
}

type localEntry struct {
	key     string
	val     []byte
	expires time.Time
}

// NewLocal makes an in-process cache of at most maxBytes of values.
func NewLocal(maxBytes int) *Local {
	return &Local{maxBytes: maxBytes, order: list.New(), entries: map[string]*list.Element{}, gens: map[string]int64{}, now: time.Now}
}

// Get reads key into v; ok is false on a miss or an expired entry.
func (l *Local) Get(ctx context.Context, key string, v any) (ok bool, err error) {
	b, ok, _ := l.GetBytes(ctx, key)
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(b, v)
}

// GetBytes reads the bytes stored at key, which the caller must not
// change; ok is false on a miss or an expired entry.
func (l *Local) GetBytes(_ context.Context, key string) (b []byte, ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el := l.entries[key]
	if el == nil {
		return nil, false, nil
	}
	e := el.Value.(*localEntry)
	if !l.now().Before(e.expires) {
		l.remove(el)
		return nil, false, nil
	}
	l.order.MoveToFront(el)
	return e.val, true, nil
}

// Set stores v under key for ttl.
func (l *Local) Set(ctx context.Context, key string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return l.SetBytes(ctx, key, b, ttl)
}

// SetBytes stores b under key for ttl; the cache keeps b, which the
// caller must not change afterwards.
func (l *Local) SetBytes(_ context.Context, key string, b []byte, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el := l.entries[key]; el != nil {
		l.remove(el)
	}
	if len(b) > l.maxBytes {
		return nil // never worth evicting everything for
	}
	l.entries[key] = l.order.PushFront(&localEntry{key: key, val: b, expires: l.now().Add(ttl)})
	l.bytes += len(b)
	for l.bytes > l.maxBytes {
		l.remove(l.order.Back())
	}
	return nil
}

func (l *Local) remove(el *list.Element) {
	e := el.Value.(*localEntry)
	l.order.Remove(el)
	delete(l.entries, e.key)
	l.bytes -= len(e.val)
}

// Len is the number of entries held (for tests and metrics).
func (l *Local) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// Bump increments the generations of ids (see Cache.Bump).
func (l *Local) Bump(_ context.Context, ids ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.gens[id]++
	}
	return nil
}

// GetGenerational reads the bytes at key and the generation of id (see
// Cache.GetGenerational).
func (l *Local) GetGenerational(ctx context.Context, id, key string) (gen int64, b []byte, ok bool, err error) {
	l.mu.Lock()
	gen = l.gens[id]
	l.mu.Unlock()
	b, ok, err = l.GetBytes(ctx, key)
	return gen, b, ok, err
}
