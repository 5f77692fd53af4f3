package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/volcanion/tracking/shared/hll"
)

var mFolds = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_storage_count_folds_total",
	Help: "Folds of a partner's manifests into totals, by result (folded, error)."}, []string{"result"})

// Folding adds sealed manifests into totals and keeps two invariants:
//
// I4 A row adds a manifest once. A totals row changes only by
//    UPDATE … IF through = old, which sets the row's new values and
//    through[bucket] to the time of the newest manifest of each bucket it
//    now holds. Manifests are added in time order per bucket, so a row
//    holds exactly the manifests at or below its through: a folder that
//    stopped half-way, or two folders at once, add nothing twice.
//    (TestFoldStopsHalfWay, TestConcurrentFolds.)
// I5 applied only follows the rows. A claim partition's applied moves to
//    its sealed time only after every row the manifests up to it count in
//    holds them. A reader reads a floor of applied, then the rows, then the
//    manifests above the floor, and counts a manifest in a slot unless the
//    row as read holds it: exact whatever a folder does in between.
//    (TestReadDuringFold.)
//
// Applied manifests are deleted a while later (dropLag), one range
// tombstone per claim partition and minute, below where any reader starts.

const (
	foldTick = 5 * time.Second
	// sealLag is how old a manifest time gets before a folder seals it: a
	// claim round slower than that is refused and retried with a later time.
	sealLag = 5 * time.Second
	// dropLag is how long an applied manifest is kept: longer than any read.
	dropLag   = 2 * time.Minute
	dropEvery = time.Minute
	casTries  = 20
)

// folder folds, in the background, the partners this process writes for.
type folder struct {
	st      *Store
	mu      sync.Mutex
	touched map[string]time.Time // partner -> first write since its last fold
	dropped map[claimKey]time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

func newFolder(st *Store) *folder {
	f := &folder{st: st, touched: map[string]time.Time{}, dropped: map[claimKey]time.Time{}, done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return f
}

// touch notes a partner written for.
func (f *folder) touch(partner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.touched[partner]; !ok {
		f.touched[partner] = time.Now()
	}
}

func (f *folder) take(before time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p, t := range f.touched {
		if t.Before(before) {
			out = append(out, p)
			delete(f.touched, p)
		}
	}
	return out
}

func (f *folder) run() {
	defer close(f.done)
	// Manifests a stopped process left: every partner with claims, once.
	f.sweep(f.ctx)
	t := time.NewTicker(foldTick)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case now := <-t.C:
			_ = f.fold(f.ctx, f.take(now.Add(-sealLag)), now.Add(-sealLag))
		}
	}
}

func (f *folder) sweep(ctx context.Context) {
	iter := f.st.s.Query("SELECT DISTINCT partner_id, bucket FROM claims").WithContext(ctx).PageSize(1000).Iter()
	var p string
	var b int16
	for iter.Scan(&p, &b) {
		f.touch(p)
	}
	_ = iter.Close()
}

func (f *folder) fold(ctx context.Context, partners []string, cutoff time.Time) error {
	fns := make([]func(context.Context) error, len(partners))
	var mu sync.Mutex
	var errs []error
	for i, p := range partners {
		fns[i] = func(ctx context.Context) error {
			fctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := f.st.foldPartner(fctx, p, cutoff); err != nil {
				mFolds.WithLabelValues("error").Inc()
				f.touch(p) // again next tick
				mu.Lock()
				errs = append(errs, fmt.Errorf("partner %s: %w", p, err))
				mu.Unlock()
				return nil
			}
			mFolds.WithLabelValues("folded").Inc()
			return nil
		}
	}
	if err := fanOut(ctx, 4, fns); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func (f *folder) close() {
	f.cancel()
	<-f.done
}

// FoldPending folds now, up to cutoff, every partner this process wrote
// for: for a loader that wants its data folded before it exits, and for
// tests. Folding is never needed for exactness, only for the cost of reads.
func (st *Store) FoldPending(ctx context.Context, cutoff time.Time) error {
	return st.folder.fold(ctx, st.folder.take(time.Now().Add(time.Hour)), cutoff)
}

// FoldPartner folds one partner's manifests up to cutoff now, wherever
// they were written: for a loader that resumes, and for tests.
func (st *Store) FoldPartner(ctx context.Context, partner string, cutoff time.Time) error {
	return st.foldPartner(ctx, partner, cutoff)
}

// A contribution is what one manifest adds to one row.
type contribution struct {
	m      *manifest
	n      int64
	group  string
	sketch []byte
}

// foldPartner seals the partner's claim partitions at cutoff, adds the
// manifests up to there into the totals (I4), then moves applied (I5).
func (st *Store) foldPartner(ctx context.Context, partner string, cutoff time.Time) error {
	applied, sealed, err := st.readApplied(ctx, partner, true)
	if err != nil {
		return err
	}
	T := cutoff.UnixNano()
	// Seal the partitions holding manifests not yet applied, up to T.
	waiting, err := st.readManifests(ctx, partner, applied, [ClaimBuckets]int64{}, false, false)
	if err != nil {
		return err
	}
	var need [ClaimBuckets]bool
	for _, m := range waiting {
		if m.mt <= T {
			need[m.bucket] = true
		}
	}
	var fns []func(context.Context) error
	for b := range ClaimBuckets {
		if !need[b] || sealed[b] >= T {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			s, err := st.seal(ctx, claimKey{partner, int16(b)}, T)
			sealed[b] = s
			return err
		})
	}
	if err := fanOut(ctx, ClaimBuckets, fns); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := st.hook("sealed"); err != nil {
		return err
	}
	upTo := applied
	for b := range ClaimBuckets {
		if sealed[b] > applied[b] {
			upTo[b] = sealed[b]
		}
	}
	if upTo == applied {
		st.folder.drop(ctx, partner, applied)
		return nil
	}
	ms, err := st.readManifests(ctx, partner, applied, upTo, true, true)
	if err != nil {
		return err
	}
	// What each row gets, by partition.
	parts := map[part]map[time.Time][]contribution{}
	add := func(a addr, c contribution) {
		p := parts[a.part()]
		if p == nil {
			p = map[time.Time][]contribution{}
			parts[a.part()] = p
		}
		p[a.slot] = append(p[a.slot], c)
	}
	for i := range ms {
		m := &ms[i]
		for k, n := range m.cells {
			c, ok, err := parseCell(k)
			if err != nil {
				return err
			}
			if ok {
				expand(partner, c, func(a addr, group string) { add(a, contribution{m: m, n: n, group: group}) })
			}
		}
		for k, b := range m.users {
			c, err := parseUcell(k)
			if err != nil {
				return err
			}
			expandUsers(c, func(a addr) { add(a, contribution{m: m, sketch: b}) })
		}
	}
	fns = fns[:0]
	for p, slots := range parts {
		fns = append(fns, func(ctx context.Context) error {
			if err := st.applyPart(ctx, p, slots); err != nil {
				return err
			}
			return st.hook("part")
		})
	}
	conc := 8
	if st.foldHook != nil {
		conc = 1 // one part at a time, so a test sees each step
	}
	if err := fanOut(ctx, conc, fns); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	// I5: every row holds the manifests up to upTo.
	fns = fns[:0]
	for b := range ClaimBuckets {
		if upTo[b] == applied[b] {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			// The value as write timestamp: applied only ever grows.
			return st.s.Query("UPDATE claims USING TIMESTAMP ? SET applied = ? WHERE partner_id = ? AND bucket = ?",
				upTo[b]/1000, upTo[b], partner, int16(b)).WithContext(ctx).Exec()
		})
	}
	if err := fanOut(ctx, ClaimBuckets, fns); err != nil {
		return fmt.Errorf("applied: %w", err)
	}
	st.raiseApplied(partner, upTo)
	st.folder.drop(ctx, partner, upTo)
	return st.hook("applied")
}

func (st *Store) hook(stage string) error {
	if st.foldHook == nil {
		return nil
	}
	return st.foldHook(stage)
}

// seal raises a claim partition's sealed to at least t and returns it.
func (st *Store) seal(ctx context.Context, ck claimKey, t int64) (int64, error) {
	for range casTries {
		var cur *int64
		if err := st.s.Query("SELECT sealed FROM claims WHERE partner_id = ? AND bucket = ? LIMIT 1", ck.partner, ck.bucket).
			Consistency(gocql.Serial).WithContext(ctx).Scan(&cur); err != nil && err != gocql.ErrNotFound {
			return 0, err
		}
		if cur != nil && *cur >= t {
			return *cur, nil
		}
		q := st.s.Query("UPDATE claims SET sealed = ? WHERE partner_id = ? AND bucket = ? IF sealed = ?", t, ck.partner, ck.bucket, cur).
			SerialConsistency(gocql.Serial).WithContext(ctx)
		applied, err := q.MapScanCAS(map[string]any{})
		if err != nil && !retryableCAS(err) {
			return 0, err
		}
		if applied {
			return t, nil
		}
	}
	return 0, fmt.Errorf("sealing %s/%d: contended", ck.partner, ck.bucket)
}

// applyPart adds contributions to the rows of one partition (I4).
func (st *Store) applyPart(ctx context.Context, p part, slots map[time.Time][]contribution) error {
	lo, hi := time.Time{}, time.Time{}
	for t := range slots {
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	rows := map[time.Time]*total{}
	// Cassandra keeps milliseconds: the bound after hi is a millisecond on.
	if err := st.readTotals(ctx, p, lo, hi.Add(time.Millisecond), true, true, rows); err != nil {
		return err
	}
	fns := make([]func(context.Context) error, 0, len(slots))
	for t, cs := range slots {
		fns = append(fns, func(ctx context.Context) error { return st.applyRow(ctx, p, t, rows[t], cs) })
	}
	return fanOut(ctx, 4, fns)
}

func (st *Store) applyRow(ctx context.Context, p part, slot time.Time, row *total, cs []contribution) error {
	now := time.Now()
	for range casTries {
		if row == nil {
			row = &total{}
		}
		next := total{n: row.n, groups: maps.Clone(row.groups), through: maps.Clone(row.through)}
		if next.groups == nil {
			next.groups = map[string]int64{}
		}
		if next.through == nil {
			next.through = map[string]int64{}
		}
		var sk hll.Sketch
		if len(row.sketch) > 0 {
			if err := sk.MergeBinary(row.sketch); err != nil {
				return err
			}
		}
		var ret time.Duration
		fresh := false
		for _, c := range cs {
			if row.covers(p, c.m) {
				continue
			}
			fresh = true
			ret = max(ret, c.m.ret)
			k := throughKey(p, c.m)
			next.through[k] = max(next.through[k], c.m.mt)
			if p.kind == kindUsers {
				if err := sk.MergeBinary(c.sketch); err != nil {
					return err
				}
				continue
			}
			next.n += c.n
			next.groups[c.group] += c.n
		}
		if !fresh {
			return nil
		}
		ttl := max(row.ttl, ttlUntil(slot.Add(p.res.Duration()+ret), now))
		if ttl == 0 {
			return nil // expired with what it counts
		}
		var old any
		if row.through != nil {
			old = row.through
		}
		var q *gocql.Query
		if p.kind == kindUsers {
			q = st.s.Query("UPDATE totals USING TTL ? SET sketch = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
				ttl, sk.Append(nil), next.through, p.kind, p.a, p.key, int8(p.res), p.period, slot, old)
		} else {
			q = st.s.Query("UPDATE totals USING TTL ? SET n = ?, groups = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
				ttl, next.n, next.groups, next.through, p.kind, p.a, p.key, int8(p.res), p.period, slot, old)
		}
		applied, err := q.SerialConsistency(gocql.Serial).WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil && !retryableCAS(err) {
			return err
		}
		if applied {
			return nil
		}
		// Another folder got there first (or the outcome is unknown): read
		// the row again and add what it does not hold yet.
		one := map[time.Time]*total{}
		if err := st.readTotals(ctx, p, slot, slot.Add(time.Millisecond), true, true, one); err != nil {
			return err
		}
		row = one[slot]
	}
	return fmt.Errorf("row %v of %v: contended", slot, p)
}

// drop deletes, at most once a minute per claim partition, the manifests
// applied more than dropLag ago: below every reader's floor.
func (f *folder) drop(ctx context.Context, partner string, applied [ClaimBuckets]int64) {
	now := time.Now()
	bound := now.Add(-dropLag).UnixNano()
	for b := range ClaimBuckets {
		ck := claimKey{partner, int16(b)}
		to := min(applied[b], bound)
		f.mu.Lock()
		last, ok := f.dropped[ck]
		due := to > 0 && (!ok || now.Sub(last) >= dropEvery)
		if due {
			f.dropped[ck] = now
		}
		f.mu.Unlock()
		if !due {
			continue
		}
		_ = f.st.s.Query("DELETE FROM claims WHERE partner_id = ? AND bucket = ? AND id > ? AND id <= ?", partner, int16(b), "~~", manifestBound(to)).
			WithContext(ctx).Exec()
	}
}
