package cassandrastore

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// Unions: a report's bucket that is many stored slots (a day in
// Asia/Kolkata is ten: a half hour, five hours, three six-hour slots, a
// half hour) needs only its users' estimate and its count, yet reading
// them means reading every slot's sketch (8 KiB when dense) and total; a
// report's range (30 days: 9 days and 3 weeks) needs its users' merged
// sketch, yet reads a dozen. The
// first read of a union keeps the figure in table unions, with a
// fingerprint of the rows it was read under: the UTC days holding its
// slots finer than a day (an hour from half past at 23:30: two days), and
// its own days and weeks, of the same kind (users or counts) and key. A
// row's through grows with every manifest folded into it (I4), and every
// manifest folded into a slot of a day is folded into the day too. A later
// read reads those few rows' through (a day's, not ten slots') and the
// kept figures, and uses one where the fingerprint is the same and no
// manifest above the floor adds to the union; else it reads the slots as
// before and keeps the new figure.
//
// Exact, as Users and Counts are. The figure is kept of a read made after
// the fingerprint's rows were read, seeing every write committed before
// (storage.WithReadAfter): a manifest a fingerprint's day held then was in
// the union's slots' rows by then, or above their floor and read from the
// manifests. Where the fingerprint is the same, the days hold what they
// held then, so every manifest at or below today's floor is in the figure;
// the ones above it are checked for (any in the union's span). A figure is
// kept no longer than the union's first slot may live: a day's through
// holds the shortest retention folded into it (retKey). Nothing is kept
// where a read may miss a committed write (LOCAL_QUORUM with a local data
// centre named, ONE), nor for unions of cut slots, out of order, or summed
// from finer rows (a layout's start). (TestUnionsSeeLateEvents,
// TestUnionKeptFromARaceWithAFold, TestUnionsAtTheRetentionHorizon,
// TestUnionsOfMixedRetention, TestUnionsOverMidnight, TestUnionsNotKept.)

// retKey is the entry of a row's through that holds the shortest
// retention (in seconds) of the manifests folded into it: the finer rows
// under a day live at least their slot's end plus that, whatever the
// retention of each partner that wrote for the key, before or after a
// change of it. A row folded first by a release before has none: its TTL
// gives the retention then, right unless the key's retention changed
// before the upgrade. (Not a claim partition: those are numbers, or a
// partner's id, a slash and a number.)
const retKey = "~ret"

// unionTTL: how long an estimate is kept unread. Computing one again costs
// a report's old read, no more.
const unionTTL = 8 * 24 * time.Hour

// sketchTTL: how long a kept sketch (8 KiB when dense) is kept. A range's
// closed part ends at today's midnight, so the next day asks another.
const sketchTTL = 26 * time.Hour

// unionSkew: how far the clocks of this process and of the writers of a
// row's TTL may be apart.
const unionSkew = 5 * time.Minute

var mUnions = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_storage_unions_total",
	Help: "Unions of slots whose users, counts or users' sketch a report asked for, by what (users, counts, sketches) and how they were answered (kept: the figure kept, merged: from the slots' rows)."}, []string{"of", "result"})

func init() {
	for _, of := range []string{"users", "counts", "sketches"} {
		for _, r := range []string{"kept", "merged"} {
			mUnions.WithLabelValues(of, r)
		}
	}
}

type keptUnion struct {
	figure
	fp int64
}

// A figure is what a union's read gives: a count or estimate, or the
// merged sketch of its users.
type figure struct {
	n      int64
	sketch []byte
}

func (f figure) empty() bool { return f.n == 0 && len(f.sketch) <= 1 } // an empty sketch is its tag

// tileAt names a row: its resolution and slot.
type tileAt struct {
	res  storage.Res
	slot time.Time
}

// marked is a fingerprint's row as read: its through, its TTL, the
// shortest retention folded into it (retKey; -1: not known).
type marked struct {
	through []byte
	ttl     int
	minRet  time.Duration
	there   bool
}

// unionOf is what a union's rows are of: kind's rows of a and key, and
// for counts one group ("": all); sketches: the union's users' sketch is
// kept, not its estimate. A kept union is under its own a and key in table
// unions: the scope's (32 + it for sketches), or 16 + the rollup's and the
// key and group.
type unionOf struct {
	kind, a  int8
	key      string
	group    string
	sketches bool
}

func (u unionOf) keptA() int8 {
	switch {
	case u.kind == kindCounts:
		return 16 + u.a
	case u.sketches:
		return 32 + u.a
	}
	return u.a
}

func (u unionOf) keptKey() string {
	if u.kind == kindCounts {
		return u.key + " " + u.group // ids hold no space
	}
	return u.key
}

// UnionEstimates implements storage.UnionReader.
func (st *Store) UnionEstimates(ctx context.Context, q storage.UnionsQuery, fn func(i int, users uint64) error) error {
	if len(q.Unions) == 0 {
		return nil
	}
	if err := st.kept(q.Scope, q.Key, firstFrom(q.Unions)); err != nil {
		return err
	}
	u := unionOf{kind: kindUsers, a: int8(q.Scope), key: q.Key}
	touches := usersTouch(q)
	merge := func(ctx context.Context, unions [][]storage.Tile, fn func(i int, f figure)) error {
		return st.mergeUnions(ctx, storage.UnionsQuery{Scope: q.Scope, Key: q.Key, Unions: unions}, func(i int, sk *hll.Sketch) {
			fn(i, figure{n: int64(sk.Estimate())})
		})
	}
	fs, err := st.unions(ctx, u, q.Unions, touches, merge)
	if err != nil {
		return err
	}
	for i, f := range fs {
		if err := fn(i, uint64(f.n)); err != nil {
			return err
		}
	}
	return nil
}

// UnionSketches implements storage.UnionReader.
func (st *Store) UnionSketches(ctx context.Context, q storage.UnionsQuery, fn func(i int, sketch []byte) error) error {
	if len(q.Unions) == 0 {
		return nil
	}
	if err := st.kept(q.Scope, q.Key, firstFrom(q.Unions)); err != nil {
		return err
	}
	u := unionOf{kind: kindUsers, a: int8(q.Scope), key: q.Key, sketches: true}
	merge := func(ctx context.Context, unions [][]storage.Tile, fn func(i int, f figure)) error {
		return st.mergeUnions(ctx, storage.UnionsQuery{Scope: q.Scope, Key: q.Key, Unions: unions}, func(i int, sk *hll.Sketch) {
			fn(i, figure{sketch: sk.Append(nil)})
		})
	}
	fs, err := st.unions(ctx, u, q.Unions, usersTouch(q), merge)
	if err != nil {
		return err
	}
	for i, f := range fs {
		if err := fn(i, f.sketch); err != nil {
			return err
		}
	}
	return nil
}

// firstFrom is the earliest start of any tile of unions (the zero time's
// latest when none has one).
func firstFrom(unions [][]storage.Tile) time.Time {
	first := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, u := range unions {
		for _, t := range u {
			if t.Res.Slot(t.From).Before(first) {
				first = t.Res.Slot(t.From)
			}
		}
	}
	return first
}

// usersTouch marks the instants of q's key's users in a manifest.
func usersTouch(q storage.UnionsQuery) func(m *manifest, mark func(time.Time)) error {
	return func(m *manifest, mark func(time.Time)) error {
		for k := range m.users {
			c, err := parseUcell(k)
			if err != nil {
				return err
			}
			if c.Scope == q.Scope && c.Key == q.Key {
				mark(time.Unix(c.Minute, 0).UTC())
			}
		}
		return nil
	}
}

// UnionCounts implements storage.UnionReader.
func (st *Store) UnionCounts(ctx context.Context, q storage.UnionCountsQuery, fn func(i int, n int64) error) error {
	if len(q.Unions) == 0 {
		return nil
	}
	u := unionOf{kind: kindCounts, a: int8(q.Rollup), key: q.Key, group: q.Group}
	touches := func(m *manifest, mark func(time.Time)) error {
		for k := range m.cells {
			c, ok, err := parseCell(k)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			key, group := c.Sub, c.Type
			switch q.Rollup {
			case storage.PartnerSubSystems:
				key, group = m.partner, c.Sub
			case storage.PartnerTypes:
				key = m.partner
			}
			// A type the row does not name may count as storage.OtherGroup.
			if key == q.Key && (q.Group == "" || group == q.Group || q.Group == storage.OtherGroup) {
				mark(time.Unix(c.Minute, 0).UTC())
			}
		}
		return nil
	}
	merge := func(ctx context.Context, unions [][]storage.Tile, fn func(i int, f figure)) error {
		return st.sumUnions(ctx, q, unions, func(i int, n int64) { fn(i, figure{n: n}) })
	}
	fs, err := st.unions(ctx, u, q.Unions, touches, merge)
	if err != nil {
		return err
	}
	for i, f := range fs {
		if err := fn(i, f.n); err != nil {
			return err
		}
	}
	return nil
}

// unions is each union's figure: kept where its fingerprint is the same
// and no manifest above the floor touches it, else from merge (called
// after the fingerprint's rows are read, seeing every write committed
// before), then kept.
func (st *Store) unions(ctx context.Context, u unionOf, unions [][]storage.Tile,
	touches func(m *manifest, mark func(time.Time)) error,
	merge func(ctx context.Context, unions [][]storage.Tile, fn func(i int, f figure)) error) ([]figure, error) {
	out := make([]figure, len(unions))
	spans := make([]storage.Span, len(unions))
	marks := make([][]tileAt, len(unions)) // each union's fingerprint's rows
	// Kept only where every read sees every write committed before it
	// (not LOCAL_QUORUM across data centres, not ONE), of unions whose
	// slots are whole and in order; else merged as asked.
	keep := st.linearizable(ctx)
	for i, un := range unions {
		seen := map[tileAt]bool{}
		keep = keep && len(un) > 0
		for k, t := range un {
			if _, _, ok := st.derived(t.Res, t.From, t.To); ok {
				keep = false // summed from finer rows: no through to go by
			}
			if !t.Res.Slot(t.From).Equal(t.From) || !t.Res.Slot(t.To).Equal(t.To) || !t.From.Before(t.To) {
				keep = false
			}
			if k == 0 || t.From.Before(spans[i].From) {
				spans[i].From = t.From
			}
			if t.To.After(spans[i].To) {
				spans[i].To = t.To
			}
			for s := t.Res.Slot(t.From); keep && s.Before(t.To); s = s.Add(t.Res.Duration()) {
				// Finer than a day: the UTC days it lies in (an hour
				// from half past at 23:30 is in two).
				ms := []tileAt{{t.Res, s}}
				if t.Res.Duration() < storage.Day.Duration() {
					ms = []tileAt{{storage.Day, storage.Day.Slot(s)}, {storage.Day, storage.Day.Slot(s.Add(t.Res.Duration() - 1))}}
				}
				for _, m := range ms {
					if !seen[m] {
						seen[m] = true
						marks[i] = append(marks[i], m)
					}
				}
			}
		}
		if i > 0 && spans[i].From.Before(spans[i-1].To) {
			keep = false
		}
		if !keep {
			return out, merge(ctx, unions, func(i int, f figure) { out[i] = f })
		}
		slices.SortFunc(marks[i], func(a, b tileAt) int {
			if c := a.slot.Compare(b.slot); c != 0 {
				return c
			}
			return int(a.res) - int(b.res)
		})
	}
	// The floors first (I5), then the manifests above them: a union one
	// of them adds to is merged.
	partners, err := st.partnersOf(ctx, u.kind, u.a, u.key)
	if err != nil {
		return nil, fmt.Errorf("cassandrastore: unions: %w", err)
	}
	floors := make([][ClaimBuckets]int64, len(partners))
	for i, p := range partners {
		if floors[i], err = st.appliedFloor(ctx, p); err != nil {
			return nil, fmt.Errorf("cassandrastore: unions: %w", err)
		}
	}
	dirty := make([]bool, len(unions))
	mark := func(t time.Time) {
		j := sort.Search(len(spans), func(j int) bool { return spans[j].To.After(t) })
		if j < len(spans) && !t.Before(spans[j].From) {
			dirty[j] = true
		}
	}
	for pi, partner := range partners {
		ms, err := st.recentManifests(ctx, partner, floors[pi])
		if err != nil {
			return nil, fmt.Errorf("cassandrastore: unions: %w", err)
		}
		err = ms.each(ctx, u.kind == kindUsers, func(m *manifest) error {
			if m.mt <= floors[pi][m.bucket] {
				return nil // applied since (a read of the last second): in the rows
			}
			return touches(m, mark)
		})
		if err != nil {
			return nil, fmt.Errorf("cassandrastore: unions: %w", err)
		}
	}
	// The fingerprints' rows, then the kept figures. ttlAt, before the
	// rows: their TTLs count from no earlier. readAt, after them: the
	// slots are read seeing every write committed before the rows were.
	ttlAt := time.Now()
	if err := st.hook("marking"); err != nil {
		return nil, err
	}
	rows, err := st.markRows(ctx, u, marks)
	if err != nil {
		return nil, err
	}
	readAt := time.Now()
	if err := st.hook("marks"); err != nil {
		return nil, err
	}
	var only *storage.Span // one union: its row alone, not every one kept from its start
	if len(spans) == 1 {
		only = &spans[0]
	}
	kept, err := st.keptUnions(ctx, u, spans[0].From, spans[len(spans)-1].From.Add(time.Millisecond), only)
	if err != nil {
		kept = nil // only a saving: read the slots
	}
	fps := make([]int64, len(unions))
	var stale []int
	for i := range unions {
		fps[i] = fingerprint(unions[i], marks[i], rows)
		k, ok := kept[spans[i]]
		if !dirty[i] && ok && k.fp == fps[i] {
			out[i] = k.figure
			continue
		}
		stale = append(stale, i)
	}
	of := "users"
	switch {
	case u.kind == kindCounts:
		of = "counts"
	case u.sketches:
		of = "sketches"
	}
	mUnions.WithLabelValues(of, "kept").Add(float64(len(unions) - len(stale)))
	mUnions.WithLabelValues(of, "merged").Add(float64(len(stale)))
	if len(stale) == 0 {
		return out, nil
	}
	sub := make([][]storage.Tile, len(stale))
	for k, i := range stale {
		sub[k] = unions[i]
	}
	if err := merge(storage.WithReadAfter(ctx, readAt), sub, func(k int, f figure) { out[stale[k]] = f }); err != nil {
		return nil, err
	}
	var fns []func(context.Context) error
	for _, i := range stale {
		ttl := keepFor(unions[i], rows, ttlAt)
		if u.sketches {
			ttl = min(ttl, sketchTTL)
		}
		if dirty[i] || ttl <= 0 || out[i].empty() {
			// A manifest adds to it (its rows change at the next fold), its
			// first slot is about to expire, or it is empty (an event type
			// no one sends costs a read, not a row).
			continue
		}
		s, f, fp := spans[i], out[i], fps[i]
		fns = append(fns, func(ctx context.Context) error {
			if u.sketches {
				return st.s.Query("INSERT INTO unions (a, key, period, span_from, span_to, sketch, fp) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
					u.keptA(), u.keptKey(), periodOf(storage.Day, false, s.From), s.From, s.To, f.sketch, fp, int(ttl.Seconds())).WithContext(ctx).Exec()
			}
			return st.s.Query("INSERT INTO unions (a, key, period, span_from, span_to, n, fp) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
				u.keptA(), u.keptKey(), periodOf(storage.Day, false, s.From), s.From, s.To, f.n, fp, int(ttl.Seconds())).WithContext(ctx).Exec()
		})
	}
	// A failed write costs the next read a merge, nothing else.
	_ = fanOut(ctx, 8, fns)
	return out, nil
}

// keepFor is how long the figure of union u may be kept: at most
// unionTTL, and until its first slot may expire, less the skew. A slot
// lives at least until its end plus the shortest retention folded into
// the rows of its fingerprint (its days, or itself): retKey, else, for a
// row folded first by a release before, at+ttl-end of the row's TTL read
// at `at`.
func keepFor(u []storage.Tile, rows map[tileAt]marked, at time.Time) time.Duration {
	keep := unionTTL
	for _, t := range u {
		for s := t.From; s.Before(t.To); s = s.Add(t.Res.Duration()) {
			end := s.Add(t.Res.Duration())
			ms := []tileAt{{t.Res, s}}
			if t.Res.Duration() < storage.Day.Duration() {
				ms = []tileAt{{storage.Day, storage.Day.Slot(s)}, {storage.Day, storage.Day.Slot(end.Add(-1))}}
			}
			for _, m := range ms {
				r := rows[m]
				var ret time.Duration
				switch {
				case !r.there:
					continue // nothing there to expire
				case r.minRet >= 0:
					ret = r.minRet
				case r.ttl > 0:
					ret = at.Add(time.Duration(r.ttl) * time.Second).Sub(m.slot.Add(m.res.Duration()))
				default:
					continue
				}
				keep = min(keep, end.Add(ret).Sub(at)-unionSkew)
			}
		}
	}
	return keep.Truncate(time.Second)
}

// markRows reads the through and TTL of the fingerprints' rows.
func (st *Store) markRows(ctx context.Context, u unionOf, marks [][]tileAt) (map[tileAt]marked, error) {
	byRes := map[storage.Res][]time.Time{}
	seen := map[tileAt]bool{}
	for _, ms := range marks {
		for _, m := range ms {
			if !seen[m] {
				seen[m] = true
				byRes[m.res] = append(byRes[m.res], m.slot)
			}
		}
	}
	var mu sync.Mutex
	out := map[tileAt]marked{}
	var fns []func(context.Context) error
	for res, slots := range byRes {
		slices.SortFunc(slots, time.Time.Compare)
		var ss storage.Spans
		for _, t := range slots {
			if n := len(ss); n > 0 && ss[n-1].To.Equal(t) {
				ss[n-1].To = t.Add(res.Duration())
				continue
			}
			ss = append(ss, storage.Span{From: t, To: t.Add(res.Duration())})
		}
		fns = append(fns, func(ctx context.Context) error {
			rows, err := st.rangeTotalsMode(ctx, u.kind, u.a, u.key, res, ss[0].From, ss[len(ss)-1].To, ss, false, forThroughs, nil)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for t, r := range rows {
				m := marked{through: r.through, ttl: r.ttl, minRet: -1, there: true}
				if v, ok := entryOf(r.through, retKey); ok && v >= 0 {
					m.minRet = time.Duration(v) * time.Second
				}
				out[tileAt{res, t}] = m
			}
			return nil
		})
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return nil, fmt.Errorf("cassandrastore: unions: %w", err)
	}
	return out, nil
}

// fingerprint is a hash of a union's slots, and of its fingerprint's rows
// as read: each one, whether it is there, and its through.
func fingerprint(u []storage.Tile, marks []tileAt, rows map[tileAt]marked) int64 {
	h := fnv.New64a()
	var b [17]byte
	for _, t := range u {
		b[0] = byte(t.Res)
		binary.BigEndian.PutUint64(b[1:9], uint64(t.From.UnixNano()))
		binary.BigEndian.PutUint64(b[9:17], uint64(t.To.UnixNano()))
		h.Write(b[:])
	}
	for _, m := range marks {
		r := rows[m]
		binary.BigEndian.PutUint64(b[:8], uint64(m.slot.UnixNano()))
		b[8] = byte(m.res)
		n := uint32(0xffffffff) // no row
		if r.there {
			n = uint32(len(r.through))
		}
		binary.BigEndian.PutUint32(b[9:13], n)
		h.Write(b[:13])
		h.Write(r.through)
	}
	return int64(h.Sum64())
}

// keptUnions reads the estimates kept of the unions starting in [from, to).
func (st *Store) keptUnions(ctx context.Context, u unionOf, from, to time.Time, only *storage.Span) (map[storage.Span]keptUnion, error) {
	out := map[storage.Span]keptUnion{}
	for t := periodStart(storage.Day, false, from); t.Before(to); t = nextPeriod(storage.Day, false, t) {
		col := "n"
		if u.sketches {
			col = "sketch"
		}
		page := 5000
		if u.sketches {
			page = 64 // up to 8 KiB each
		}
		q := st.s.Query("SELECT span_from, span_to, "+col+", fp FROM unions WHERE a = ? AND key = ? AND period = ? AND span_from >= ? AND span_from < ?",
			u.keptA(), u.keptKey(), periodOf(storage.Day, false, t), from, to)
		if only != nil {
			q = st.s.Query("SELECT span_from, span_to, "+col+", fp FROM unions WHERE a = ? AND key = ? AND period = ? AND span_from = ? AND span_to = ?",
				u.keptA(), u.keptKey(), periodOf(storage.Day, false, t), only.From, only.To)
		}
		iter := q.WithContext(ctx).PageSize(page).Iter()
		for {
			var s, e time.Time
			var k keptUnion
			dest := []any{&s, &e, &k.n, &k.fp}
			if u.sketches {
				dest[2] = &k.sketch
			}
			if !iter.Scan(dest...) {
				break
			}
			if u.sketches && (len(k.sketch) <= 1 || hll.Check(k.sketch) != nil) {
				continue // none kept (empty ones never are), or not a sketch: read the slots
			}
			out[storage.Span{From: s.UTC(), To: e.UTC()}] = k
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("cassandrastore: unions: %w", err)
		}
	}
	return out, nil
}

// mergeUnions merges each union's slots' sketches (Users: the rows and the
// manifests above the floor).
func (st *Store) mergeUnions(ctx context.Context, q storage.UnionsQuery, fn func(i int, sk *hll.Sketch)) error {
	sketches := make([]hll.Sketch, len(q.Unions))
	err := readUnions(ctx, q.Unions, func(ctx context.Context, res storage.Res, ss storage.Spans, got func(time.Time, []byte) error) error {
		return st.Users(ctx, storage.UsersQuery{Scope: q.Scope, Key: q.Key, Res: res, From: ss[0].From, To: ss[len(ss)-1].To, Only: ss}, got)
	}, func(i int, b []byte) error { return sketches[i].MergeBinary(b) })
	if err != nil {
		return err
	}
	for i := range sketches {
		fn(i, &sketches[i])
	}
	return nil
}

// sumUnions counts each union from its slots' rows (Counts: the rows and
// the manifests above the floor).
func (st *Store) sumUnions(ctx context.Context, q storage.UnionCountsQuery, unions [][]storage.Tile, fn func(i int, n int64)) error {
	sums := make([]int64, len(unions))
	err := readUnions(ctx, unions, func(ctx context.Context, res storage.Res, ss storage.Spans, got func(time.Time, int64) error) error {
		slots, err := st.Counts(ctx, storage.CountsQuery{Rollup: q.Rollup, Key: q.Key, Res: res, From: ss[0].From, To: ss[len(ss)-1].To, Only: ss, Group: q.Group})
		for _, sl := range slots {
			if err == nil {
				err = got(sl.Start, sl.Total)
			}
		}
		return err
	}, func(i int, n int64) error { sums[i] += n; return nil })
	if err != nil {
		return err
	}
	for i, n := range sums {
		fn(i, n)
	}
	return nil
}

// readUnions reads the slots of unions, each resolution's in one read
// naming its spans (side by side), and calls add (serialised) with what a
// slot read gives for each union it is in (one, for unions apart).
func readUnions[V any](ctx context.Context, unions [][]storage.Tile,
	read func(ctx context.Context, res storage.Res, ss storage.Spans, got func(time.Time, V) error) error,
	add func(i int, v V) error) error {
	owner := map[tileAt][]int{}
	byRes := map[storage.Res]storage.Spans{}
	for i, u := range unions {
		for _, t := range u {
			byRes[t.Res] = append(byRes[t.Res], storage.Span{From: t.From, To: t.To})
			for s := t.Res.Slot(t.From); s.Before(t.To); s = s.Add(t.Res.Duration()) {
				owner[tileAt{t.Res, s}] = append(owner[tileAt{t.Res, s}], i)
			}
		}
	}
	var mu sync.Mutex
	var fns []func(context.Context) error
	for res, ss := range byRes {
		slices.SortFunc(ss, func(a, b storage.Span) int { return a.From.Compare(b.From) })
		fns = append(fns, func(ctx context.Context) error {
			return read(ctx, res, ss, func(t time.Time, v V) error {
				mu.Lock()
				defer mu.Unlock()
				for _, i := range owner[tileAt{res, t}] {
					if err := add(i, v); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return fmt.Errorf("cassandrastore: unions: %w", err)
	}
	return nil
}

// entryOf is the entry key of a through, if it has one.
func entryOf(b []byte, key string) (v int64, ok bool) {
	err := decodeCounts(b, func(k string, n int64) {
		if k == key {
			v, ok = n, true
		}
	})
	return v, ok && err == nil
}

// linearizable tells whether every read sees every write committed before
// it: the session's consistency is a quorum of every replica, or a local
// one in a cluster of one data centre (read from system.local and
// system.peers until they answer; till then taken for several).
func (st *Store) linearizable(ctx context.Context) bool {
	switch st.cfg.Consistency {
	case gocql.Quorum, gocql.All, gocql.EachQuorum:
		return true
	case gocql.LocalQuorum:
	default:
		return false
	}
	st.dcsMu.Lock()
	defer st.dcsMu.Unlock()
	if !st.dcsKnown {
		dcs := map[string]bool{}
		var dc string
		if err := st.s.Query("SELECT data_center FROM system.local").WithContext(ctx).Scan(&dc); err != nil {
			return false // asked again next time
		}
		dcs[dc] = true
		iter := st.s.Query("SELECT data_center FROM system.peers").WithContext(ctx).Iter()
		for iter.Scan(&dc) {
			dcs[dc] = true
		}
		if iter.Close() != nil {
			return false
		}
		st.dcsKnown, st.oneDC = true, len(dcs) == 1
	}
	return st.oneDC
}
