// Package pebblestore is the embedded storage backend: a Pebble LSM in the
// data dir. Its key layout mirrors the Cassandra tables, partition key first,
// then clustering columns:
//
//	p/<partnerId>                                      partners
//	pc/<code>                                          partners_by_code
//	s/<subSystemId>                                    sub_systems
//	sp/<partnerId>/<subSystemId>                       sub_systems_by_partner
//	sc/<partnerId>/<code>                              sub_systems_by_code
//	k/<keyId>                                          api_keys
//	kp/<partnerId>/<keyId>                             api_keys_by_partner
//	ep/<partnerId>/<day>/<bucket>/<ts>/<eventId>       events_by_partner
//	es/<subSystemId>/<day>/<bucket>/<ts>/<eventId>     events_by_sub_system
//	ei/<partnerId>/<eventId>                           event_ids (dedup): 0x01, digest[16], events_by_partner key
//	c/<rollup>/<key>/<res>/<slot>                      counts (see "events" below)
//	u/<scope>/<key>/<res>/<slot>                       user sketches
//
// Writes that must be atomic (unique codes, event + dedup + rollups) take a
// mutex and commit one synced batch, so a crash leaves all or nothing.
package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Store is the Pebble backend.
type Store struct {
	db *pebble.DB
	// r is what reads read: the database, or a snapshot of it in a ReadView.
	r  pebble.Reader
	mu sync.Mutex // serialises read-check-write sequences
}

var _ storage.Store = (*Store)(nil)

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Errorf(f string, a ...any) {}
func (quietLogger) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

const blockCacheBytes = 64 << 20

// Open opens (or creates) the store in dir.
func Open(dir string) (*Store, error) {
	// A block cache of 64 MiB (Pebble's default is 8): reports read the
	// same count and sketch blocks again and again.
	cache := pebble.NewCache(blockCacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{Logger: quietLogger{}, Cache: cache}
	// Bloom filters on every level: the duplicate check of a new event id
	// (the common case) is answered from the filter without reading blocks.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %s: %w", dir, err)
	}
	s := &Store{db: db, r: db}
	if err := s.rebuildRollups(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.reencodeSketches(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// FilterHits is how many times a Bloom filter spared reading a data block
// (for tests and metrics).
func (s *Store) FilterHits() int64 { return s.db.Metrics().Filter.Hits }

// Flush writes the memtable to sstables and compacts everything down to
// the bottom level, where most ids live in a long-running store (for tests).
func (s *Store) Flush() error {
	if err := s.db.Flush(); err != nil {
		return err
	}
	return s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false)
}

// Close flushes and closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Retention is 0: the embedded store keeps everything.
func (s *Store) Retention(tenant.Partner) time.Duration { return 0 }

// Ping checks the database answers reads.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.get([]byte("ping"))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

func key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, p...)
	}
	return b
}

// prefixEnd is the smallest key greater than every key with the prefix.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (s *Store) get(k []byte) ([]byte, error) {
	v, c, err := s.r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pebblestore: get: %w", err)
	}
	defer c.Close()
	return bytes.Clone(v), nil
}

func (s *Store) has(k []byte) (bool, error) {
	_, err := s.get(k)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (s *Store) getJSON(k []byte, v any) error {
	b, err := s.get(k)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// scan calls fn for each key/value with the prefix, in key order, until fn returns false.
func (s *Store) scan(lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := s.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("pebblestore: iter: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		more, err := fn(it.Key(), it.Value())
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func (s *Store) scanPrefix(prefix []byte, fn func(k, v []byte) (bool, error)) error {
	return s.scan(prefix, prefixEnd(prefix), fn)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are stored
	}
	return b
}

func (s *Store) commit(b *pebble.Batch) error {
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebblestore: commit: %w", err)
	}
	return nil
}

// ---- partners ----

// Code index entries are under storage.CodeKey(code). Entries written before
// codes were case-insensitive sit under the code as written: they are still
// found, and moved to the case-insensitive key at the record's next write.

func partnerCodeKey(code string) []byte { return key("pc", code) }

func (s *Store) CreatePartner(ctx context.Context, p tenant.Partner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok, err := s.has(key("p", p.ID)); err != nil {
		return err
	} else if ok {
		return storage.ErrExists
	}
	p.Version = 1
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.moveCode(b, partnerCodeKey, "", p.Code, p.ID, false, p.Status != tenant.Deleted, s.livePartnerCodes); err != nil {
		return err
	}
	b.Set(key("p", p.ID), mustJSON(p), nil)
	return s.commit(b)
}

func (s *Store) UpdatePartner(ctx context.Context, p tenant.Partner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old tenant.Partner
	if err := s.getJSON(key("p", p.ID), &old); err != nil {
		return err
	}
	if old.Version != p.Version {
		return storage.ErrConflict
	}
	p.Version++
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.moveCode(b, partnerCodeKey, old.Code, p.Code, p.ID, old.Status != tenant.Deleted, p.Status != tenant.Deleted, s.livePartnerCodes); err != nil {
		return err
	}
	b.Set(key("p", p.ID), mustJSON(p), nil)
	return s.commit(b)
}

// livePartnerCodes lists the codes of live partners by id, for the
// case-insensitive check against entries written before it existed.
func (s *Store) livePartnerCodes() (map[string]string, error) {
	out := map[string]string{}
	err := s.scanPrefix([]byte("p/"), func(_, v []byte) (bool, error) {
		var p tenant.Partner
		if err := json.Unmarshal(v, &p); err != nil {
			return false, err
		}
		if p.Status != tenant.Deleted {
			out[p.ID] = p.Code
		}
		return true, nil
	})
	return out, err
}

// moveCode keeps the code index in step with a record's code and liveness.
// live lists the codes of the other live records in the same scope; it is
// read only when the record takes a code it did not hold. A record whose
// code does not change keeps its index entry where it is (an entry written
// before codes were case-insensitive stays under the code as written).
func (s *Store) moveCode(b *pebble.Batch, idx func(string) []byte, oldCode, newCode, id string, wasLive, isLive bool, live func() (map[string]string, error)) error {
	changed := !wasLive || !isLive || oldCode != newCode
	if !changed {
		return nil
	}
	newK := idx(storage.CodeKey(newCode))
	if isLive {
		if cur, err := s.get(newK); err == nil && string(cur) != id {
			return storage.ErrCodeTaken
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		codes, err := live()
		if err != nil {
			return err
		}
		for other, c := range codes {
			if other != id && strings.EqualFold(c, newCode) {
				return storage.ErrCodeTaken
			}
		}
		b.Set(newK, []byte(id), nil)
	}
	if wasLive {
		for _, k := range [][]byte{idx(oldCode), idx(storage.CodeKey(oldCode))} {
			if isLive && bytes.Equal(k, newK) {
				continue
			}
			if cur, err := s.get(k); err == nil && string(cur) == id {
				b.Delete(k, nil)
			}
		}
	}
	return nil
}

func (s *Store) GetPartner(ctx context.Context, id string) (tenant.Partner, error) {
	var p tenant.Partner
	return p, s.getJSON(key("p", id), &p)
}

// byCode finds the live record with a code: the one written with exactly
// that code first (two records written before codes were case-insensitive
// may differ by case only), then the case-insensitive entry.
func byCode[T any](s *Store, idx func(string) []byte, code string, get func(id string) (T, error), codeOf func(T) (string, bool)) (T, error) {
	var zero T
	for i, k := range [][]byte{idx(code), idx(storage.CodeKey(code))} {
		id, err := s.get(k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return zero, err
		}
		r, err := get(string(id))
		if err != nil {
			return zero, err
		}
		c, live := codeOf(r)
		if live && (c == code || i == 1 && strings.EqualFold(c, code)) {
			return r, nil
		}
	}
	return zero, storage.ErrNotFound
}

func (s *Store) GetPartnerByCode(ctx context.Context, code string) (tenant.Partner, error) {
	return byCode(s, partnerCodeKey, code, func(id string) (tenant.Partner, error) { return s.GetPartner(ctx, id) },
		func(p tenant.Partner) (string, bool) { return p.Code, p.Status != tenant.Deleted })
}

func (s *Store) ListPartners(ctx context.Context, page storage.Page) ([]tenant.Partner, int, error) {
	items := []tenant.Partner{}
	total := 0
	err := s.scanPrefix([]byte("p/"), func(k, v []byte) (bool, error) {
		var p tenant.Partner
		if err := json.Unmarshal(v, &p); err != nil {
			return false, err
		}
		if p.Status == tenant.Deleted && !page.IncludeDeleted {
			return true, nil
		}
		if total >= page.Offset && len(items) < page.Limit {
			items = append(items, p)
		}
		total++
		return true, ctx.Err()
	})
	return items, total, err
}

// ---- sub-systems ----

func subCodeIdx(partnerID string) func(string) []byte {
	return func(code string) []byte { return key("sc", partnerID, code) }
}

// liveSubCodes lists the codes of a partner's live sub-systems by id.
func (s *Store) liveSubCodes(ctx context.Context, partnerID string) func() (map[string]string, error) {
	return func() (map[string]string, error) {
		subs, err := s.ListSubSystems(ctx, partnerID, false)
		out := map[string]string{}
		for _, ss := range subs {
			out[ss.ID] = ss.Code
		}
		return out, err
	}
}

func (s *Store) CreateSubSystem(ctx context.Context, ss tenant.SubSystem) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok, err := s.has(key("s", ss.ID)); err != nil {
		return err
	} else if ok {
		return storage.ErrExists
	}
	ss.Version = 1
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.moveCode(b, subCodeIdx(ss.PartnerID), "", ss.Code, ss.ID, false, ss.Status != tenant.Deleted, s.liveSubCodes(ctx, ss.PartnerID)); err != nil {
		return err
	}
	b.Set(key("s", ss.ID), mustJSON(ss), nil)
	b.Set(key("sp", ss.PartnerID, ss.ID), nil, nil)
	return s.commit(b)
}

func (s *Store) UpdateSubSystem(ctx context.Context, ss tenant.SubSystem) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old tenant.SubSystem
	if err := s.getJSON(key("s", ss.ID), &old); err != nil {
		return err
	}
	if old.Version != ss.Version {
		return storage.ErrConflict
	}
	ss.Version++
	ss.PartnerID = old.PartnerID // a sub-system never moves
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.moveCode(b, subCodeIdx(ss.PartnerID), old.Code, ss.Code, ss.ID,
		old.Status != tenant.Deleted, ss.Status != tenant.Deleted, s.liveSubCodes(ctx, ss.PartnerID)); err != nil {
		return err
	}
	b.Set(key("s", ss.ID), mustJSON(ss), nil)
	return s.commit(b)
}

func (s *Store) GetSubSystem(ctx context.Context, id string) (tenant.SubSystem, error) {
	var ss tenant.SubSystem
	return ss, s.getJSON(key("s", id), &ss)
}

func (s *Store) GetSubSystemByCode(ctx context.Context, partnerID, code string) (tenant.SubSystem, error) {
	return byCode(s, subCodeIdx(partnerID), code, func(id string) (tenant.SubSystem, error) { return s.GetSubSystem(ctx, id) },
		func(ss tenant.SubSystem) (string, bool) {
			return ss.Code, ss.Status != tenant.Deleted && ss.PartnerID == partnerID
		})
}

func (s *Store) ListSubSystems(ctx context.Context, partnerID string, includeDeleted bool) ([]tenant.SubSystem, error) {
	out := []tenant.SubSystem{}
	prefix := key("sp", partnerID, "")
	err := s.scanPrefix(prefix, func(k, _ []byte) (bool, error) {
		ss, err := s.GetSubSystem(ctx, string(k[len(prefix):]))
		if err != nil {
			return false, err
		}
		if ss.Status != tenant.Deleted || includeDeleted {
			out = append(out, ss)
		}
		return true, nil
	})
	return out, err
}

// ---- API keys ----

func (s *Store) CreateAPIKey(ctx context.Context, k tenant.APIKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok, err := s.has(key("k", k.ID)); err != nil {
		return err
	} else if ok {
		return storage.ErrExists
	}
	k.Version = 1
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(key("k", k.ID), mustJSON(k), nil)
	b.Set(key("kp", k.PartnerID, k.ID), nil, nil)
	return s.commit(b)
}

func (s *Store) UpdateAPIKey(ctx context.Context, k tenant.APIKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old tenant.APIKey
	if err := s.getJSON(key("k", k.ID), &old); err != nil {
		return err
	}
	if old.Version != k.Version {
		return storage.ErrConflict
	}
	k.Version++
	k.LastUsedAt = old.LastUsedAt // only TouchAPIKey moves it
	k.PartnerID = old.PartnerID   // nor does a key move
	return s.db.Set(key("k", k.ID), mustJSON(k), pebble.Sync)
}

func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var k tenant.APIKey
	if err := s.getJSON(key("k", id), &k); err != nil {
		return err
	}
	if k.LastUsedAt != nil && !at.After(*k.LastUsedAt) {
		return nil
	}
	at = at.UTC()
	k.LastUsedAt = &at
	return s.db.Set(key("k", id), mustJSON(k), pebble.NoSync) // a sample: losing one on a crash is harmless
}

func (s *Store) GetAPIKey(ctx context.Context, id string) (tenant.APIKey, error) {
	var k tenant.APIKey
	return k, s.getJSON(key("k", id), &k)
}

func (s *Store) ListAPIKeys(ctx context.Context, partnerID string) ([]tenant.APIKey, error) {
	out := []tenant.APIKey{}
	prefix := key("kp", partnerID, "")
	var ids []string
	if err := s.scanPrefix(prefix, func(k, _ []byte) (bool, error) {
		ids = append(ids, string(k[len(prefix):]))
		return true, nil
	}); err != nil {
		return nil, err
	}
	for _, id := range ids {
		k, err := s.GetAPIKey(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	// Key ids are random, so restore creation order.
	sortKeys(out)
	return out, nil
}

func sortKeys(ks []tenant.APIKey) {
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].CreatedAt.Before(ks[j].CreatedAt) })
}

// ---- events ----

// Counts and user sketches are kept per slot of every resolution:
//
//	c/<rollup>/<key>/<res>/<slot>   counts: uvarint total, then per group (in order) uvarint length, group, uvarint count
//	u/<scope>/<key>/<res>/<slot>    users: an encoded hll.Sketch
//	meta/rollups                    "6" once every stored event is counted in this layout
//	                                (3: half hours and six hours added, 4: hours from half past,
//	                                5: weeks, 6: the users of each event type;
//	                                Open recounts a store of an earlier one, a store at 5
//	                                only into the users of each type)
//	meta/sketches                   "2" once every sketch is in this release's form (nibbles)
//
// <slot> is the slot's UTC start as yyyymmddhhmm, so keys sort in time order.
// Stores written before kept quarter-hour counts under qs/qp and hourly
// ones under rs/rp; Open rebuilds the layout from the stored events.
const (
	slotLayout    = "200601021504"
	quarterLayout = "200601021504"
	hourLayout    = "2006010215"
	rollupsMeta   = "meta/rollups"
	rollupsLayout = "6"
	// typedLayout is the layout that lacks only the users of each type.
	typedLayout  = "5"
	sketchesMeta = "meta/sketches"
	sketchesForm = "2"
)

func countPrefix(r storage.Rollup, k string, res storage.Res) []byte {
	return fmt.Appendf(nil, "c/%d/%s/%d/", r, k, res)
}

func userPrefix(u storage.UserScope, k string, res storage.Res) []byte {
	return fmt.Appendf(nil, "u/%d/%s/%d/", u, k, res)
}

func slotKey(prefix []byte, t time.Time) []byte {
	return append(bytes.Clone(prefix), t.UTC().Format(slotLayout)...)
}

// parseSlot reads a slot's start as slotKey wrote it (slotLayout, UTC),
// as time.Parse would but without its generality: a report reads
// thousands of slots.
func parseSlot(b []byte) (time.Time, error) {
	if len(b) != len(slotLayout) {
		return time.Time{}, fmt.Errorf("slot %q: not %d digits", b, len(slotLayout))
	}
	var f [5]int // year, month, day, hour, minute
	for i, c := range b {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("slot %q: not digits", b)
		}
		k := 0
		if i >= 4 {
			k = (i-4)/2 + 1
		}
		f[k] = f[k]*10 + int(c-'0')
	}
	t := time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], 0, 0, time.UTC)
	if int(t.Month()) != f[1] || t.Day() != f[2] || f[3] > 23 || f[4] > 59 {
		return time.Time{}, fmt.Errorf("slot %q: no such time", b)
	}
	return t, nil
}

func quarterKey(t time.Time) string { return t.UTC().Truncate(storage.Quarter).Format(quarterLayout) }
func hourKey(t time.Time) string    { return t.UTC().Format(hourLayout) }

func tsKey(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return fmt.Sprintf("%x", b)
}

func encodeSlot(total int64, groups map[string]int64) []byte {
	gs := make([]string, 0, len(groups))
	n := binary.MaxVarintLen64
	for g := range groups {
		gs = append(gs, g)
		n += len(g) + 2*binary.MaxVarintLen64
	}
	sort.Strings(gs)
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(total))
	for _, g := range gs {
		b = binary.AppendUvarint(b, uint64(len(g)))
		b = append(b, g...)
		b = binary.AppendUvarint(b, uint64(groups[g]))
	}
	return b
}

// decodeSlot decodes a counts value; fn, when set, sees each group.
func decodeSlot(v []byte, fn func(group []byte, n int64)) (int64, error) {
	total, k := binary.Uvarint(v)
	if k <= 0 {
		return 0, fmt.Errorf("pebblestore: bad counts value")
	}
	if fn == nil {
		return int64(total), nil // the total comes first: a series of totals reads no group
	}
	for v = v[k:]; len(v) > 0; {
		l, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < l {
			return 0, fmt.Errorf("pebblestore: bad counts value")
		}
		g := v[k : k+int(l)]
		v = v[k+int(l):]
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return 0, fmt.Errorf("pebblestore: bad counts value")
		}
		v = v[k:]
		fn(g, int64(n))
	}
	return int64(total), nil
}

type slotDelta struct {
	total  int64
	groups map[string]int64
}

// deltaKey names a counts slot (or, with r = -1 - scope, a user sketch)
// without building its key for every event.
type deltaKey struct {
	r, res int8
	key    string
	slot   int64
}

// rollupDeltas is what a set of new events adds to counts and sketches.
type rollupDeltas struct {
	counts map[deltaKey]*slotDelta
	users  map[deltaKey]*hll.Sketch
}

func newDeltas() *rollupDeltas {
	return &rollupDeltas{counts: map[deltaKey]*slotDelta{}, users: map[deltaKey]*hll.Sketch{}}
}

func (d *rollupDeltas) add(e *event.Event) { d.addTo(e, true, storage.UserScopes) }

// addTo adds e to the counts (when counts) and the sketches of scopes.
func (d *rollupDeltas) addTo(e *event.Event, counts bool, scopes []storage.UserScope) {
	user := storage.UserOf(e)
	var h uint64
	if user != "" {
		h = hll.Hash(user)
	}
	for _, res := range storage.Resolutions {
		slot := res.Slot(e.Timestamp).Unix()
		for _, r := range storage.Rollups {
			if !counts {
				break
			}
			k, g := r.Key(e)
			dk := deltaKey{int8(r), int8(res), k, slot}
			c := d.counts[dk]
			if c == nil {
				c = &slotDelta{groups: map[string]int64{}}
				d.counts[dk] = c
			}
			c.total++
			c.groups[g]++
		}
		if user == "" {
			continue
		}
		for _, u := range scopes {
			if !u.Keeps(e) {
				continue
			}
			dk := deltaKey{int8(u), int8(res), u.Key(e), slot}
			sk := d.users[dk]
			if sk == nil {
				sk = &hll.Sketch{}
				d.users[dk] = sk
			}
			sk.AddHash(h)
		}
	}
}

// apply adds the deltas to the stored values into b. Callers hold s.mu.
func (s *Store) applyDeltas(b *pebble.Batch, d *rollupDeltas) error {
	for dk, c := range d.counts {
		k := slotKey(countPrefix(storage.Rollup(dk.r), dk.key, storage.Res(dk.res)), time.Unix(dk.slot, 0))
		v, err := s.get(k)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// The stored groups first: they keep their names, and new ones past
		// storage.MaxGroups are counted as storage.OtherGroup.
		groups := c.groups
		if v != nil || len(groups) > storage.MaxGroups {
			groups = map[string]int64{}
			if v != nil {
				total, err := decodeSlot(v, func(g []byte, n int64) { groups[string(g)] += n })
				if err != nil {
					return fmt.Errorf("%w (%q)", err, k)
				}
				c.total += total
			}
			for g, n := range c.groups {
				storage.AddGroup(groups, g, n)
			}
		}
		if err := b.Set(k, encodeSlot(c.total, groups), nil); err != nil {
			return err
		}
	}
	for dk, sk := range d.users {
		k := slotKey(userPrefix(storage.UserScope(dk.r), dk.key, storage.Res(dk.res)), time.Unix(dk.slot, 0))
		v, err := s.get(k)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err := sk.MergeBinary(v); err != nil {
			return fmt.Errorf("pebblestore: user sketch %q: %w", k, err)
		}
		// Users seen before change no register: the sketch as stored is
		// already the merge (an encoding is a function of the registers),
		// and a dense one rewritten for nothing is 8 KiB more to log and
		// compact.
		enc := sk.Append(nil)
		if bytes.Equal(enc, v) {
			continue
		}
		if err := b.Set(k, enc, nil); err != nil {
			return err
		}
	}
	return nil
}

// marked reports whether the marker key holds want: a one-time pass at
// Open is done.
func (s *Store) marked(key, want string) (bool, error) {
	v, err := s.get([]byte(key))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil && string(v) == want, err
}

// rebuildRollups counts every stored event into the current layout, once:
// a store written before it has counts in an older layout (or none at
// all). It starts over if a rebuild was interrupted.
func (s *Store) rebuildRollups() error {
	if done, err := s.marked(rollupsMeta, rollupsLayout); done || err != nil {
		return err
	}
	// A store at the layout before has every count and sketch but those of
	// each type's users: it is recounted into those alone.
	onlyTyped, err := s.marked(rollupsMeta, typedLayout)
	if err != nil {
		return err
	}
	counts, scopes, clear := true, storage.UserScopes, []string{"c/", "u/"}
	if onlyTyped {
		counts, scopes, clear = false, nil, nil
		for _, u := range storage.UserScopes {
			if u.IsTyped() {
				scopes = append(scopes, u)
				clear = append(clear, string(fmt.Appendf(nil, "u/%d/", u)))
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	for _, p := range clear {
		if err := b.DeleteRange([]byte(p), prefixEnd([]byte(p)), nil); err != nil {
			return err
		}
	}
	if err := s.commit(b); err != nil {
		return err
	}
	d, n := newDeltas(), 0
	flush := func() error {
		b := s.db.NewBatch()
		defer b.Close()
		if err := s.applyDeltas(b, d); err != nil {
			return err
		}
		d, n = newDeltas(), 0
		return s.commit(b)
	}
	err = s.scanPrefix([]byte("ep/"), func(k, v []byte) (bool, error) {
		var e event.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return false, fmt.Errorf("pebblestore: stored event %q: %w", k, err)
		}
		d.addTo(&e, counts, scopes)
		if n++; n == 20_000 {
			return true, flush()
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("pebblestore: rebuild counts: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	b = s.db.NewBatch()
	defer b.Close()
	for _, p := range []string{"qs/", "qp/", "rs/", "rp/"} {
		if err := b.DeleteRange([]byte(p), prefixEnd([]byte(p)), nil); err != nil {
			return err
		}
	}
	if err := b.Set([]byte(rollupsMeta), []byte(rollupsLayout), nil); err != nil {
		return err
	}
	return s.commit(b)
}

// reencodeSketches rewrites, once, the sketches an older release stored in
// another form than this one writes (dense ones a byte a register, before
// nibbles): half the bytes for a report to read. The registers stay the
// same, so every figure does. An interrupted pass starts over (the marker
// is written last); a sketch that does not decode is left as it is, its
// slot failing its reads as before.
func (s *Store) reencodeSketches() error {
	if done, err := s.marked(sketchesMeta, sketchesForm); done || err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	n := 0
	err := s.scanPrefix([]byte("u/"), func(k, v []byte) (bool, error) {
		var sk hll.Sketch
		if sk.MergeBinary(v) != nil {
			return true, nil
		}
		if nb := sk.Append(nil); !bytes.Equal(nb, v) {
			if err := b.Set(k, nb, nil); err != nil {
				return false, err
			}
			if n++; n%reencodeBatch == 0 {
				if err := s.commit(b); err != nil {
					return false, err
				}
				b.Close()
				b = s.db.NewBatch()
				if reencodeHook != nil {
					if err := reencodeHook(n); err != nil {
						return false, err
					}
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("pebblestore: re-encode sketches: %w", err)
	}
	if err := b.Set([]byte(sketchesMeta), []byte(sketchesForm), nil); err != nil {
		return err
	}
	return s.commit(b)
}

// reencodeBatch is the sketches rewritten a commit; reencodeHook, when set,
// runs after each commit (tests interrupt the pass there).
var (
	reencodeBatch = 10_000
	reencodeHook  func(rewritten int) error
)

// idValue is the event_ids value: a version byte, the event's digest, and
// the key of its events_by_partner row. Values written before digests were
// kept are the bare row key.
func idValue(d [16]byte, pk []byte) []byte {
	v := make([]byte, 0, 1+len(d)+len(pk))
	v = append(v, 1)
	v = append(v, d[:]...)
	return append(v, pk...)
}

func parseIDValue(v []byte) (digest []byte, pk []byte) {
	if len(v) > 17 && v[0] == 1 {
		return v[1:17], v[17:]
	}
	return nil, v
}

// WriteEvents commits the new events, their id records and their rollup
// increments in one synced batch under the store's lock: the id record is
// the commit point, and nothing is counted without it.
func (s *Store) WriteEvents(ctx context.Context, events []event.Event) (storage.WriteResult, error) {
	var res storage.WriteResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	seen := make(map[string][16]byte, len(events))
	deltas := newDeltas()
	now := time.Now()
	// Duplicate checks go through one iterator that consults the Bloom
	// filters on every level: a plain Get skips them on the bottom level,
	// where most stored ids are, and would read a block for each new id.
	ids, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("ei/"), UpperBound: []byte("ei0"), UseL6Filters: true})
	if err != nil {
		return res, fmt.Errorf("pebblestore: iter: %w", err)
	}
	defer ids.Close()
	for i := range events {
		e := &events[i]
		if e.Retention > 0 && !e.Timestamp.Add(e.Retention).After(now) {
			// Past its retention: as if it had expired (Pebble keeps what it
			// stores; only an explicit retention applies).
			res.Expired = append(res.Expired, i)
			continue
		}
		idk := key("ei", e.PartnerID, e.ID)
		d := e.Digest()
		if prev, ok := seen[string(idk)]; ok {
			if prev != d {
				res.Conflicts = append(res.Conflicts, i)
			}
			continue
		}
		seen[string(idk)] = d
		if ids.SeekPrefixGE(idk) && bytes.Equal(ids.Key(), idk) {
			if stored, _ := parseIDValue(ids.Value()); stored != nil && !bytes.Equal(stored, d[:]) {
				res.Conflicts = append(res.Conflicts, i)
			}
			continue
		} else if err := ids.Error(); err != nil {
			return storage.WriteResult{}, fmt.Errorf("pebblestore: check id: %w", err)
		}
		ts := e.Timestamp.UTC()
		day := ts.Format("20060102")
		bucket := fmt.Sprintf("%02d", storage.Bucket(e.ID))
		body := mustJSON(e)
		pk := key("ep", e.PartnerID, day, bucket, tsKey(ts), e.ID)
		b.Set(pk, body, nil)
		b.Set(key("es", e.SubSystemID, day, bucket, tsKey(ts), e.ID), body, nil)
		b.Set(idk, idValue(d, pk), nil)
		deltas.add(e)
		res.Written++
	}
	if res.Written == 0 {
		return res, nil
	}
	if err := s.applyDeltas(b, deltas); err != nil {
		return storage.WriteResult{}, err
	}
	if err := s.commit(b); err != nil {
		return storage.WriteResult{}, err
	}
	return res, nil
}

func (s *Store) GetEvent(ctx context.Context, partnerID, id string) (event.Event, error) {
	var e event.Event
	v, err := s.get(key("ei", partnerID, id))
	if err != nil {
		return e, err
	}
	_, pk := parseIDValue(v)
	return e, s.getJSON(pk, &e)
}

func (s *Store) Counts(ctx context.Context, q storage.CountsQuery) ([]storage.Slot, error) {
	p := countPrefix(q.Rollup, q.Key, q.Res)
	out := []storage.Slot{}
	err := s.scanSlots(p, q.Only.Within(q.Res, q.From, q.To), func(start time.Time, k, v []byte) error {
		sl := storage.Slot{Start: start}
		var fn func([]byte, int64)
		switch {
		case q.Group != "":
			fn = func(g []byte, n int64) {
				if string(g) == q.Group || q.AlsoOther && string(g) == storage.OtherGroup {
					sl.Total += n
				}
			}
		case q.Groups:
			sl.Groups = map[string]int64{}
			fn = func(g []byte, n int64) { sl.Groups[string(g)] = n }
		}
		total, err := decodeSlot(v, fn)
		if err != nil {
			return fmt.Errorf("%w (%q)", err, k)
		}
		if q.Group == "" {
			sl.Total = total
		}
		if sl.Total > 0 {
			out = append(out, sl)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) Users(ctx context.Context, q storage.UsersQuery, fn func(time.Time, []byte) error) error {
	p := userPrefix(q.Scope, q.Key, q.Res)
	return s.scanSlots(p, q.Only.Within(q.Res, q.From, q.To), func(start time.Time, _, v []byte) error {
		if err := fn(start, v); err != nil {
			return err
		}
		return ctx.Err()
	})
}

// UserEstimates estimates each sketch as it is read: Pebble reads them in
// process, where a sketch costs little more than a number would.
func (s *Store) UserEstimates(ctx context.Context, q storage.UsersQuery, fn func(time.Time, uint64) error) error {
	return storage.EstimateUsers(ctx, s.Users, q, fn)
}

// scanSlots calls fn with the rows under p of the slots starting in spans
// (in order, apart, each starting on a slot): one iterator, a seek a span,
// so a Kathmandu report's 1,500 half-hour spans are not 1,500 iterators.
func (s *Store) scanSlots(p []byte, spans storage.Spans, fn func(start time.Time, k, v []byte) error) error {
	if len(spans) == 0 {
		return nil
	}
	it, err := s.r.NewIter(&pebble.IterOptions{LowerBound: slotKey(p, spans[0].From), UpperBound: slotKey(p, ceilTo(spans[len(spans)-1].To, time.Minute))})
	if err != nil {
		return fmt.Errorf("pebblestore: iter: %w", err)
	}
	defer it.Close()
	for _, sp := range spans {
		for ok := it.SeekGE(slotKey(p, sp.From)); ok; ok = it.Next() {
			k := it.Key()
			start, err := parseSlot(k[len(p):])
			if err != nil {
				return fmt.Errorf("pebblestore: bad slot key %q: %w", k, err)
			}
			if !start.Before(sp.To) {
				break
			}
			if err := fn(start, k, it.Value()); err != nil {
				return err
			}
		}
		if err := it.Error(); err != nil {
			return err
		}
	}
	return nil
}

// ReadView reads counts and sketches from one snapshot: a report's figures
// agree with each other while events are written.
func (s *Store) ReadView() (storage.Reads, func()) {
	snap := s.db.NewSnapshot()
	return snapshotReads{&Store{db: s.db, r: snap}}, func() { snap.Close() }
}

// snapshotReads is a view's reads and nothing else: a write through it
// would check against the snapshot, not the database.
type snapshotReads struct{ s *Store }

func (v snapshotReads) Counts(ctx context.Context, q storage.CountsQuery) ([]storage.Slot, error) {
	return v.s.Counts(ctx, q)
}

func (v snapshotReads) Users(ctx context.Context, q storage.UsersQuery, fn func(time.Time, []byte) error) error {
	return v.s.Users(ctx, q, fn)
}

func (v snapshotReads) UserEstimates(ctx context.Context, q storage.UsersQuery, fn func(time.Time, uint64) error) error {
	return v.s.UserEstimates(ctx, q, fn)
}

var _ storage.ReadViewer = (*Store)(nil)

func (s *Store) ListEvents(ctx context.Context, q storage.EventsQuery) ([]event.Event, error) {
	return storage.ListEvents(ctx, s, q, s.minuteEvents)
}

// minuteEvents reads a partner's events of one minute from its 16 buckets.
func (s *Store) minuteEvents(ctx context.Context, partnerID string, minute time.Time, f storage.MinuteFilter) ([]storage.StoredEvent, error) {
	day := minute.UTC().Format("20060102")
	var out []storage.StoredEvent
	for b := range storage.Buckets {
		p := key("ep", partnerID, day, fmt.Sprintf("%02d", b), "")
		lower := append(bytes.Clone(p), tsKey(minute)...)
		upper := append(bytes.Clone(p), tsKey(minute.Add(time.Minute))...)
		err := s.scan(lower, upper, func(k, v []byte) (bool, error) {
			if !f.Maybe(v) {
				return true, nil
			}
			// The key ends with the timestamp (16 hex digits), '/' and the id.
			rest := k[len(p):]
			ns, err := strconv.ParseUint(string(rest[:min(16, len(rest))]), 16, 64)
			if err != nil || len(rest) < 18 || rest[16] != '/' {
				return false, fmt.Errorf("pebblestore: stored event key %q: not a timestamp and id", k)
			}
			out = append(out, storage.StoredEvent{At: time.Unix(0, int64(ns)).UTC(), ID: string(rest[17:]), Body: bytes.Clone(v)})
			return true, ctx.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ceilTo is t rounded up to a multiple of d: the first slot key at or
// after t, so the slot holding a mid-minute t is scanned.
func ceilTo(t time.Time, d time.Duration) time.Time {
	if tr := t.Truncate(d); !tr.Equal(t) {
		return tr.Add(d)
	}
	return t
}
