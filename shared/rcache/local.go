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
// them, so a hit is a copy; the least recently used go first once the
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
func (l *Local) Get(_ context.Context, key string, v any) (ok bool, err error) {
	l.mu.Lock()
	el := l.entries[key]
	if el == nil {
		l.mu.Unlock()
		return false, nil
	}
	e := el.Value.(*localEntry)
	if !l.now().Before(e.expires) {
		l.remove(el)
		l.mu.Unlock()
		return false, nil
	}
	l.order.MoveToFront(el)
	val := e.val
	l.mu.Unlock()
	return true, json.Unmarshal(val, v)
}

// Set stores v under key for ttl.
func (l *Local) Set(_ context.Context, key string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
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

// Generation reads the generation of id.
func (l *Local) Generation(_ context.Context, id string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gens[id], nil
}
