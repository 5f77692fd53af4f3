package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

var mFolds = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_storage_count_folds_total",
	Help: "Folds of batch rows (counts and user sketches) into slot totals, by result (folded, contended, error)."}, []string{"result"})

// foldKey is a partition of rollups ('r') or user_sketches ('u').
type foldKey struct {
	kind   byte
	a      int8 // rollup or scope
	key    string
	res    storage.Res
	period int
}

func (k foldKey) String() string {
	return fmt.Sprint(string(k.kind), k.a, "/", k.key, "/", int8(k.res), "/", k.period)
}

// pending is a partition written since its last fold: the slots written,
// and when its rows are old enough to fold.
type pending struct {
	lo, hi time.Time
	due    time.Time
}

// folder folds the partitions this process writes in the background, once
// their rows are foldAfter old: a fold is an optimisation of reads and of
// partition size, never needed for exactness (I4).
type folder struct {
	st     *Store
	mu     sync.Mutex
	pend   map[foldKey]*pending
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

const foldTick = 5 * time.Second

func newFolder(st *Store) *folder {
	f := &folder{st: st, pend: map[foldKey]*pending{}, done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return f
}

// touch notes a slot written in a partition.
func (f *folder) touch(k foldKey, slot time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.add(k, slot, slot, time.Now().Add(foldAfter))
}

func (f *folder) add(k foldKey, lo, hi, due time.Time) {
	p := f.pend[k]
	if p == nil {
		f.pend[k] = &pending{lo: lo, hi: hi, due: due}
		return
	}
	if lo.Before(p.lo) {
		p.lo = lo
	}
	if hi.After(p.hi) {
		p.hi = hi
	}
}

// take removes and returns the partitions due by now.
func (f *folder) take(now time.Time, all bool) map[foldKey]pending {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[foldKey]pending{}
	for k, p := range f.pend {
		if all || !p.due.After(now) {
			out[k] = *p
			delete(f.pend, k)
		}
	}
	return out
}

func (f *folder) run() {
	defer close(f.done)
	t := time.NewTicker(foldTick)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case now := <-t.C:
			_ = f.foldDue(f.ctx, now, now.Add(-foldAfter), false)
		}
	}
}

// foldDue folds the partitions due (all of them if all) with rows written
// before cutoff; a partition with younger rows is folded again later.
func (f *folder) foldDue(ctx context.Context, now, cutoff time.Time, all bool) error {
	var first error
	for k, p := range f.take(now, all) {
		if ctx.Err() != nil {
			f.mu.Lock()
			f.add(k, p.lo, p.hi, p.due)
			f.mu.Unlock()
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		young, err := f.st.fold(fctx, k, p.lo, p.hi, cutoff)
		cancel()
		if err != nil {
			mFolds.WithLabelValues("error").Inc()
			if first == nil {
				first = err
			}
		}
		if err != nil || young {
			f.mu.Lock()
			f.add(k, p.lo, p.hi, time.Now().Add(foldAfter))
			f.mu.Unlock()
		}
	}
	return first
}

func (f *folder) close() {
	f.cancel()
	<-f.done
}

// FoldPending folds now every partition this process wrote, with rows
// written before cutoff: for a loader that wants its data folded before it
// exits, and for tests. Concurrent writers elsewhere need cutoff at least
// foldAfter in the past (I4).
func (st *Store) FoldPending(ctx context.Context, cutoff time.Time) error {
	return st.folder.foldDue(ctx, time.Now(), cutoff, true)
}

// fold folds the slots [lo, hi] of a partition; young reports rows left
// because they were written after cutoff.
func (st *Store) fold(ctx context.Context, k foldKey, lo, hi, cutoff time.Time) (young bool, err error) {
	if k.kind == 'u' {
		return st.foldSketches(ctx, k, lo, hi, cutoff)
	}
	return st.foldCounts(ctx, k, lo, hi, cutoff)
}

type countRow struct {
	batch  gocql.UUID
	sum    int64
	groups map[string]int64
	ttl    int
}

type slotRows struct {
	total    int64
	groups   map[string]int64
	hasTotal bool
	ttl      int
	rows     []countRow
}

const partWhere = " WHERE rollup = ? AND key = ? AND res = ? AND period = ?"

// foldCounts replaces the complete batch rows of each slot written before
// cutoff by the slot's total, in one conditional batch of the partition
// (I4): IF n = the total read, so two folders never both add a row.
func (st *Store) foldCounts(ctx context.Context, k foldKey, lo, hi, cutoff time.Time) (bool, error) {
	iter := st.s.Query("SELECT slot, batch_id, n, groups, claims, complete, WRITETIME(complete), TTL(complete), TTL(n) FROM rollups"+
		partWhere+" AND slot >= ? AND slot <= ?", k.a, k.key, int8(k.res), k.period, lo, hi).
		Consistency(gocql.Serial).WithContext(ctx).PageSize(5000).Iter()
	slots := map[time.Time]*slotRows{}
	var (
		slot             time.Time
		batch            gocql.UUID
		n                *int64
		groups           map[string]int64
		claims           map[int]int64
		complete         *bool
		written          *int64
		ttlRow, ttlTotal *int
		young            bool
	)
	limit := cutoff.UnixMicro()
	for iter.Scan(&slot, &batch, &n, &groups, &claims, &complete, &written, &ttlRow, &ttlTotal) {
		s := slots[slot]
		if s == nil {
			s = &slotRows{groups: map[string]int64{}}
			slots[slot] = s
		}
		switch {
		case batch == totalBatch:
			s.hasTotal = true
			if n != nil {
				s.total = *n
			}
			for g, v := range groups {
				s.groups[g] += v
			}
			if ttlTotal != nil {
				s.ttl = max(s.ttl, *ttlTotal)
			}
		case complete != nil && *complete && written != nil && *written < limit:
			r := countRow{batch: batch, groups: map[string]int64{}}
			for _, v := range claims {
				r.sum += v
			}
			for g, v := range groups { // a complete row counts by group in groups
				r.groups[g] += v
			}
			if ttlRow != nil {
				r.ttl = *ttlRow
			}
			s.rows = append(s.rows, r)
		case complete != nil && *complete:
			young = true
		}
		n, groups, claims, complete, written, ttlRow, ttlTotal = nil, nil, nil, nil, nil, nil, nil
	}
	if err := iter.Close(); err != nil {
		return young, err
	}
	// One conditional batch folds many slots of the partition (single
	// partition batches have no size limit): a slot's total is updated IF
	// it is still what was read, its folded rows deleted; a slot folds at
	// most claimRows rows a pass, the rest on the next.
	b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial)
	flush := func() error {
		if len(b.Entries) == 0 {
			return nil
		}
		applied, it, err := b.MapExecCASContext(ctx, map[string]any{})
		if it != nil {
			it.Close()
		}
		b = st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial)
		if err != nil {
			return err
		}
		if !applied {
			mFolds.WithLabelValues("contended").Inc()
			return errContended // another process folded some of these slots meanwhile
		}
		mFolds.WithLabelValues("folded").Inc()
		return nil
	}
	for slot, s := range slots {
		if len(s.rows) == 0 {
			continue
		}
		if len(s.rows) > claimRows {
			s.rows, young = s.rows[:claimRows], true
		}
		total, ttl := s.total, s.ttl
		groups := make(map[string]int64, len(s.groups))
		for g, v := range s.groups {
			groups[g] = v
		}
		for _, r := range s.rows {
			total += r.sum
			ttl = max(ttl, r.ttl)
			for g, v := range r.groups {
				groups[g] += v
			}
		}
		if ttl == 0 {
			continue // everything in it has expired
		}
		if len(b.Entries)+1+len(s.rows) > foldStatements {
			if err := flush(); err != nil {
				return young, ignoreContended(err)
			}
		}
		if s.hasTotal {
			b.Query("UPDATE rollups USING TTL ? SET n = ?, groups = ?"+partWhere+" AND slot = ? AND batch_id = ? IF n = ?",
				ttl, total, groups, k.a, k.key, int8(k.res), k.period, slot, totalBatch, s.total)
		} else {
			b.Query("INSERT INTO rollups (rollup, key, res, period, slot, batch_id, n, groups) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
				k.a, k.key, int8(k.res), k.period, slot, totalBatch, total, groups, ttl)
		}
		for _, r := range s.rows {
			b.Query("DELETE FROM rollups"+partWhere+" AND slot = ? AND batch_id = ?", k.a, k.key, int8(k.res), k.period, slot, r.batch)
		}
	}
	return young, ignoreContended(flush())
}

// foldStatements bounds a fold's conditional batch.
const foldStatements = 200

var errContended = errors.New("cassandrastore: fold contended")

func ignoreContended(err error) error {
	if errors.Is(err, errContended) {
		return nil
	}
	return err
}

// foldSketches merges the sketch rows of each slot written before cutoff
// into one new row, then deletes the rows merged. Merging is idempotent and
// a row is deleted only once a row holding it is written, so folders
// racing each other lose nothing; they may leave two rows, which the next
// fold merges.
func (st *Store) foldSketches(ctx context.Context, k foldKey, lo, hi, cutoff time.Time) (bool, error) {
	where := " WHERE scope = ? AND key = ? AND res = ? AND period = ?"
	iter := st.s.Query("SELECT slot, batch_id, sketch, WRITETIME(sketch), TTL(sketch) FROM user_sketches"+where+" AND slot >= ? AND slot <= ?",
		k.a, k.key, int8(k.res), k.period, lo, hi).WithContext(ctx).PageSize(1000).Iter()
	type rows struct {
		sk      hll.Sketch
		batches []gocql.UUID
		ttl     int
	}
	slots := map[time.Time]*rows{}
	var (
		slot    time.Time
		batch   gocql.UUID
		b       []byte
		written int64
		ttl     *int
		young   bool
	)
	limit := cutoff.UnixMicro()
	for iter.Scan(&slot, &batch, &b, &written, &ttl) {
		if written >= limit {
			young = true
			continue
		}
		r := slots[slot]
		if r == nil {
			r = &rows{}
			slots[slot] = r
		}
		if err := r.sk.MergeBinary(b); err != nil {
			iter.Close()
			return young, fmt.Errorf("cassandrastore: user sketch of %v: %w", slot, err)
		}
		r.batches = append(r.batches, batch)
		if ttl != nil {
			r.ttl = max(r.ttl, *ttl)
		}
		ttl = nil
	}
	if err := iter.Close(); err != nil {
		return young, err
	}
	for slot, r := range slots {
		if len(r.batches) < 2 || r.ttl == 0 {
			continue
		}
		merged := gocql.TimeUUID()
		if err := st.write("INSERT INTO user_sketches (scope, key, res, period, slot, batch_id, sketch) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
			k.a, k.key, int8(k.res), k.period, slot, merged, r.sk.Append(nil), r.ttl).ExecContext(ctx); err != nil {
			return young, err
		}
		for i := 0; i < len(r.batches); i += batchRows {
			del := st.s.Batch(gocql.UnloggedBatch)
			for _, id := range r.batches[i:min(i+batchRows, len(r.batches))] {
				del.Entries = append(del.Entries, gocql.BatchEntry{Stmt: "DELETE FROM user_sketches" + where + " AND slot = ? AND batch_id = ?",
					Args: []any{k.a, k.key, int8(k.res), k.period, slot, id}, Idempotent: true})
			}
			if err := del.ExecContext(ctx); err != nil {
				return young, err
			}
		}
		mFolds.WithLabelValues("folded").Inc()
	}
	return young, nil
}

// FoldRange folds, with rows written before cutoff, every partition of the
// given rollup and sketch keys that holds slots in [from, to): for a bulk
// import, whose writer may have exited before its folds were due. A
// partition that fails is left unfolded (folding is never needed for
// exactness); the others are still folded, and the failures are returned.
func (st *Store) FoldRange(ctx context.Context, rollups map[storage.Rollup][]string, scopes map[storage.UserScope][]string, from, to, cutoff time.Time) error {
	var fns []func(context.Context) error
	var mu sync.Mutex
	var failed []error
	add := func(kind byte, a int8, key string) {
		for _, res := range storage.Resolutions {
			for t := periodStart(res, from); t.Before(to); t = nextPeriod(res, t) {
				k := foldKey{kind, a, key, res, periodOf(res, t)}
				lo, hi := t, nextPeriod(res, t)
				fns = append(fns, func(ctx context.Context) error {
					if _, err := st.fold(ctx, k, lo, hi, cutoff); err != nil {
						mu.Lock()
						failed = append(failed, fmt.Errorf("%s: %w", k, err))
						mu.Unlock()
					}
					return nil
				})
			}
		}
	}
	for r, keys := range rollups {
		for _, k := range keys {
			add('r', int8(r), k)
		}
	}
	for sc, keys := range scopes {
		for _, k := range keys {
			add('u', int8(sc), k)
		}
	}
	if err := fanOut(ctx, 4, fns); err != nil {
		return err
	}
	return errors.Join(failed...)
}
