package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// folders are the open stores' folders, for trk_storage_fold_behind_seconds.
var folders = struct {
	sync.Mutex
	all map[*folder]bool
}{all: map[*folder]bool{}}

var _ = promauto.NewGaugeFunc(prometheus.GaugeOpts{Name: "trk_storage_fold_behind_seconds",
	Help: "Age of the oldest manifest not folded yet, over the partners this process folds: under 10 s (the seal lag and a tick) when folding keeps up; growing while a partner writes faster than it is folded, or its folds fail."},
	func() float64 {
		folders.Lock()
		defer folders.Unlock()
		oldest := int64(math.MaxInt64)
		for f := range folders.all {
			f.mu.Lock()
			for _, mt := range f.behind {
				oldest = min(oldest, mt)
			}
			f.mu.Unlock()
		}
		if oldest == math.MaxInt64 {
			return 0
		}
		return max(0, time.Since(time.Unix(0, oldest)).Seconds())
	})

var mFolds = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_storage_count_folds_total",
	Help: "Folds of a partner's manifests into totals, by result (folded, error)."}, []string{"result"})

func init() {
	for _, r := range []string{"folded", "error"} {
		mFolds.WithLabelValues(r) // each series from the start, at 0
	}
}

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
//    its sealed time (or a round's end below it, foldRound) only after
//    every row the manifests up to there count in holds them. A reader reads a floor of applied, then the manifests
//    above it and the rows (in either order), and counts a manifest in a
//    slot unless the row as read holds it: exact whatever a folder does in
//    between. (TestReadDuringFold, TestUsersFromAFloorBelowTheRows.)
//
// Applied manifests are deleted a while later (dropLag), one range
// tombstone per claim partition and minute, below where any reader starts.

const (
	foldTick = 5 * time.Second
	// sealLag is how old a manifest time gets before a folder seals it: a
	// claim round slower than that is refused and retried with a later time.
	sealLag = 5 * time.Second
	// dropLag is how long a manifest is kept after it was applied (by the
	// folder's clock): longer than any read of a report.
	dropLag   = 10 * time.Minute
	dropEvery = time.Minute
	casTries  = 20
	// foldBudget: how long a folder keeps folding one partner's backlog,
	// round after round, before it gives the others their turn.
	foldBudget = 30 * time.Second
	// sweepEvery: how often a process looks for manifests no one folds
	// (a worker that stopped for good, a lapsed lease).
	sweepEvery = 5 * time.Minute
)

// folder folds, in the background, the partners this process writes for.
// One process at a time folds a partner: it holds the partner's lease
// (fold_leases, renewed while it folds) and folds it every tick until it
// has been idle for a while; a process that writes for a partner another
// holds leaves the folding to it, and takes over when the lease lapses.
// Two folders at once would still be exact (I4), only wasteful.
type folder struct {
	st      *Store
	id      gocql.UUID
	mu      sync.Mutex
	touched map[string]time.Time // partner -> first write since its last fold
	leases  map[string]*lease
	dropped map[claimKey]time.Time
	applied map[claimKey][]appliedMark // when applied moved, for drop
	behind  map[string]int64           // partner -> its oldest manifest not applied, as last seen
	manual  map[string]int             // partners FoldPartner is folding
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

type appliedMark struct {
	v  int64
	at time.Time
}

type lease struct {
	until time.Time
	idle  int // folds in a row that found nothing
}

const (
	leaseTTL  = 30 * time.Second
	leaseIdle = 6 // folds (30 s) before a lease is let go
)

func newFolder(st *Store) *folder {
	f := &folder{st: st, id: gocql.TimeUUID(), touched: map[string]time.Time{}, leases: map[string]*lease{},
		dropped: map[claimKey]time.Time{}, applied: map[claimKey][]appliedMark{}, behind: map[string]int64{}, manual: map[string]int{}, done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	folders.Lock()
	folders.all[f] = true
	folders.Unlock()
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

// take returns the partners touched before before, and those leased.
func (f *folder) take(before time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p, t := range f.touched {
		if _, held := f.leases[p]; t.Before(before) && !held {
			out = append(out, p)
		}
		if t.Before(before) {
			delete(f.touched, p)
		}
	}
	for p := range f.leases {
		out = append(out, p)
	}
	return out
}

func (f *folder) run() {
	defer close(f.done)
	// Manifests a stopped process left: every partner with claims, at
	// start and every sweepEvery.
	f.sweep(f.ctx)
	t := time.NewTicker(foldTick)
	defer t.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-sweep.C:
			f.sweep(f.ctx)
		case now := <-t.C:
			// Seal by Cassandra's clock, the same for every folder: one
			// whose own clock ran ahead would seal claims out for a while.
			cutoff := f.st.serverNow(f.ctx, now).Add(-sealLag)
			_ = f.fold(f.ctx, f.take(now.Add(-sealLag)), cutoff, true)
		}
	}
}

// serverNow is the time of the Cassandra node that answers, or local when
// none does.
func (st *Store) serverNow(ctx context.Context, local time.Time) time.Time {
	var ms int64
	if err := st.s.Query("SELECT toUnixTimestamp(now()) FROM system.local").WithContext(ctx).Scan(&ms); err != nil {
		return local
	}
	return time.UnixMilli(ms)
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

// hold takes or renews the partner's lease; false when another process
// holds it.
func (f *folder) hold(ctx context.Context, partner string) (bool, error) {
	f.mu.Lock()
	l := f.leases[partner]
	f.mu.Unlock()
	now := time.Now()
	if l != nil && l.until.Sub(now) > leaseTTL/2 {
		return true, nil
	}
	cur := map[string]any{}
	applied, err := f.st.s.Query("INSERT INTO fold_leases (partner_id, owner) VALUES (?, ?) IF NOT EXISTS USING TTL ?",
		partner, f.id, int(leaseTTL.Seconds())).SerialConsistency(gocql.Serial).WithContext(ctx).MapScanCAS(cur)
	if err != nil {
		return false, err
	}
	if !applied {
		if owner, _ := cur["owner"].(gocql.UUID); owner != f.id {
			f.mu.Lock()
			delete(f.leases, partner)
			f.mu.Unlock()
			return false, nil
		}
		if applied, err = f.st.s.Query("UPDATE fold_leases USING TTL ? SET owner = ? WHERE partner_id = ? IF owner = ?",
			int(leaseTTL.Seconds()), f.id, partner, f.id).SerialConsistency(gocql.Serial).WithContext(ctx).MapScanCAS(map[string]any{}); err != nil || !applied {
			return false, err
		}
	}
	f.mu.Lock()
	if l == nil {
		l = &lease{}
		f.leases[partner] = l
	}
	l.until = now.Add(leaseTTL)
	f.mu.Unlock()
	return true, nil
}

// fold folds partners up to cutoff; with leased, only those this process
// holds the lease of.
func (f *folder) fold(ctx context.Context, partners []string, cutoff time.Time, leased bool) error {
	fns := make([]func(context.Context) error, len(partners))
	var mu sync.Mutex
	var errs []error
	fail := func(p string, err error) {
		mFolds.WithLabelValues("error").Inc()
		f.st.cfg.Log.Warn().Err(err).Str("partner", p).Msg("fold failed; the partner's counts are exact, read slower until a fold succeeds")
		f.touch(p) // again next tick
		mu.Lock()
		errs = append(errs, fmt.Errorf("partner %s: %w", p, err))
		mu.Unlock()
	}
	for i, p := range partners {
		fns[i] = func(ctx context.Context) error {
			// A backlog is folded a bounded round at a time, one after
			// another, each round with its own deadline; the folder's for
			// at most foldBudget, then the next tick goes on, so other
			// partners, leases and sweeps are not held up behind it.
			start := time.Now()
			for {
				more, err := f.foldRound(ctx, p, cutoff, leased)
				if err != nil {
					fail(p, err)
					return nil
				}
				if !more || ctx.Err() != nil {
					return nil
				}
				if leased && time.Since(start) > foldBudget {
					f.touch(p)
					return nil
				}
			}
		}
	}
	if err := fanOut(ctx, 4, fns); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// foldRound folds one round of partner's manifests, first taking or
// renewing its lease when leased; more tells that manifests up to cutoff
// are left for another round.
func (f *folder) foldRound(ctx context.Context, p string, cutoff time.Time, leased bool) (more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	f.mu.Lock()
	manual := f.manual[p] > 0
	f.mu.Unlock()
	if leased && manual {
		f.touch(p) // FoldPartner folds it now; again after
		return false, nil
	}
	if leased {
		mine, err := f.hold(ctx, p)
		if err != nil {
			return false, err
		}
		if !mine {
			f.touch(p) // the holder folds it; take over if it stops
			f.mu.Lock()
			delete(f.behind, p) // the holder tells how far behind it is
			f.mu.Unlock()
			return false, nil
		}
	}
	worked, more, err := f.st.foldPartner(ctx, p, cutoff)
	if err != nil {
		return false, err
	}
	mFolds.WithLabelValues("folded").Inc()
	f.mu.Lock()
	if l := f.leases[p]; l != nil {
		if l.idle = l.idle + 1; worked {
			l.idle = 0
		}
		if l.idle >= leaseIdle {
			delete(f.leases, p) // let it lapse
			delete(f.behind, p)
		}
	}
	f.mu.Unlock()
	return more, nil
}

// close stops folding; first, when final, it folds what this process
// wrote for and gives up its leases, so nothing waits for the next sweep.
func (f *folder) close() {
	f.cancel()
	<-f.done
	folders.Lock()
	delete(folders.all, f)
	folders.Unlock()
}

func (f *folder) finish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Up to now by either clock: this process's own claims are done, and a
	// round of another's that is still in flight goes again later.
	now := time.Now()
	cutoff := f.st.serverNow(ctx, now)
	if now.After(cutoff) {
		cutoff = now
	}
	_ = f.fold(ctx, f.take(now.Add(time.Hour)), cutoff, true)
	f.mu.Lock()
	held := make([]string, 0, len(f.leases))
	for p := range f.leases {
		held = append(held, p)
	}
	f.leases = map[string]*lease{}
	f.mu.Unlock()
	for _, p := range held {
		_ = f.st.s.Query("DELETE FROM fold_leases WHERE partner_id = ? IF owner = ?", p, f.id).
			SerialConsistency(gocql.Serial).WithContext(ctx).Exec()
	}
}

// FoldPending folds now, up to cutoff, every partner this process wrote
// for: for a loader that wants its data folded before it exits, and for
// tests. Folding is never needed for exactness, only for the cost of reads.
func (st *Store) FoldPending(ctx context.Context, cutoff time.Time) error {
	return st.folder.fold(ctx, st.folder.take(time.Now().Add(time.Hour)), cutoff, false)
}

// FoldPartner folds one partner's manifests up to cutoff now, wherever
// they were written: for a loader that resumes, and for tests.
func (st *Store) FoldPartner(ctx context.Context, partner string, cutoff time.Time) error {
	// This process's folder leaves the partner alone meanwhile: two folders
	// on the same rounds are exact, but each does the other's work again.
	f := st.folder
	f.mu.Lock()
	f.manual[partner]++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.manual[partner]--; f.manual[partner] == 0 {
			delete(f.manual, partner)
		}
		f.mu.Unlock()
	}()
	for {
		_, more, err := st.foldPartner(ctx, partner, cutoff)
		if err != nil || !more {
			return err
		}
	}
}

// A contribution is what one manifest adds to one row.
type contribution struct {
	m      *manifest
	n      int64
	group  string
	sketch []byte
}

// foldRound is the most manifests of a claim partition one fold round
// takes. A round holds its manifests, and what each adds to each row at
// each resolution, in memory (about 100 KiB a manifest of the workers'
// batches: 2,000 events over 32 partitions, a user on each), and a node
// builds each page of them whole: a worker that fell behind (a partner
// writing faster than one folder folds, or folding stopped a while) folds
// its backlog in rounds of about 1,000 manifests and 64,000 events, not in
// one read that grows with the backlog until it fails its deadline every
// time, or runs a node or the worker out of memory (the report benchmark's
// loader grew to 18 GiB 100,000 manifests behind).
const foldRound = 32

// foldPartner seals the partner's claim partitions at cutoff (or, where
// more manifests wait than a round takes, at the round's end: foldRound),
// adds the manifests up to there into the totals (I4), then moves applied
// (I5); more tells that some up to cutoff are left.
func (st *Store) foldPartner(ctx context.Context, partner string, cutoff time.Time) (worked, more bool, err error) {
	// Read at the operator's level: a stale applied only means more
	// manifests read (rows skip what they hold), a stale sealed one more
	// round in seal.
	applied, sealed, err := st.readApplied(ctx, partner, false)
	if err != nil {
		return false, false, err
	}
	T := cutoff.UnixNano()
	round := st.foldRound
	if round <= 0 {
		round = foldRound
	}
	// The first manifests above applied, a round's at most: which
	// partitions to seal, and where in each this round stops (end).
	waiting, err := st.readManifestTimes(ctx, partner, applied, round)
	if err != nil {
		return false, false, err
	}
	var need [ClaimBuckets]bool
	var end [ClaimBuckets]int64
	for b, mts := range waiting {
		end[b] = math.MaxInt64
		if len(mts) > 0 {
			worked = true
			need[b] = mts[0] <= T
		}
		if len(mts) >= round {
			end[b] = mts[len(mts)-1] // the rest, next round
		}
	}
	st.folder.noteBehind(partner, waiting, applied, end) // until applied moves
	var fns []func(context.Context) error
	for b := range ClaimBuckets {
		t := min(T, end[b])
		if !need[b] || sealed[b] >= t {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			s, err := st.seal(ctx, claimKey{partner, int16(b)}, t)
			sealed[b] = s
			return err
		})
	}
	if err := fanOut(ctx, ClaimBuckets, fns); err != nil {
		return false, false, fmt.Errorf("seal: %w", err)
	}
	if err := st.hook("sealed"); err != nil {
		return false, false, err
	}
	upTo := applied
	for b := range ClaimBuckets {
		if sealed[b] > applied[b] {
			upTo[b] = min(sealed[b], end[b])
		}
		// Left for the next round: sealed manifests past this round's end,
		// or ones up to cutoff not sealed yet.
		if end[b] < math.MaxInt64 && end[b] < max(T, sealed[b]) {
			more = true
		}
	}
	if upTo == applied {
		st.folder.drop(ctx, partner)
		return worked, more, nil
	}
	// SERIAL: every round sealed is committed, and this read must see it,
	// whatever level the operator set.
	ms, err := st.readManifests(ctx, partner, applied, &upTo, true, true)
	if err != nil {
		return false, false, err
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
				return false, false, err
			}
			if ok {
				expand(partner, c, func(a addr, group string) { add(a, contribution{m: m, n: n, group: group}) })
			}
		}
		for k, b := range m.users {
			c, err := parseUcell(k)
			if err != nil {
				return false, false, err
			}
			expandUsers(c, func(a addr) { add(a, contribution{m: m, sketch: b}) })
		}
	}
	// The parts of one Cassandra partition (a key's types) together, so
	// their rows share conditional batches: a fold of 50 types is not 50
	// times the rounds of Paxos.
	byPartition := map[part][]part{}
	for p := range parts {
		byPartition[p.partition()] = append(byPartition[p.partition()], p)
	}
	fns = fns[:0]
	for _, ps := range byPartition {
		fns = append(fns, func(ctx context.Context) error {
			if err := st.applyParts(ctx, ps, parts); err != nil {
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
		return false, false, fmt.Errorf("apply: %w", err)
	}
	// I5: every row holds the manifests up to upTo.
	fns = fns[:0]
	for b := range ClaimBuckets {
		if upTo[b] == applied[b] {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			// The value as write timestamp: applied only ever grows.
			return st.s.Query("UPDATE claims USING TIMESTAMP ? SET applied = ? WHERE partner_id = ? AND bucket = ? AND id = ''",
				upTo[b]/1000, upTo[b], partner, int16(b)).WithContext(ctx).Exec()
		})
	}
	if err := fanOut(ctx, ClaimBuckets, fns); err != nil {
		return false, false, fmt.Errorf("applied: %w", err)
	}
	st.raiseApplied(partner, upTo, true)
	st.folder.noteApplied(partner, applied, upTo)
	st.folder.noteBehind(partner, waiting, upTo, end)
	st.folder.drop(ctx, partner)
	return true, more, st.hook("applied")
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
		if err := st.s.Query("SELECT sealed FROM claims WHERE partner_id = ? AND bucket = ? AND id = ''", ck.partner, ck.bucket).
			Consistency(gocql.Serial).WithContext(ctx).Scan(&cur); err != nil && err != gocql.ErrNotFound {
			return 0, err
		}
		if cur != nil && *cur >= t {
			return *cur, nil
		}
		q := st.s.Query("UPDATE claims SET sealed = ? WHERE partner_id = ? AND bucket = ? AND id = '' IF sealed = ?", t, ck.partner, ck.bucket, cur).
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

// readPending reads the rows of a fold's slots of one partition: by name
// where they are few of the range they span (a late event's half hour and
// the current one, a month apart, are two rows, not 1,400), else the range.
// A read at SERIAL reads the range.
func (st *Store) readPending(ctx context.Context, p part, pending []time.Time, mode readMode, rows map[time.Time]*total) error {
	first, last := pending[0], pending[len(pending)-1]
	if mode == forFold && len(pending)*2 < int(last.Sub(first)/p.res.Duration())+1 {
		for len(pending) > 0 {
			n := min(len(pending), inList(p.kind, mode))
			if err := st.readTotals(ctx, p, time.Time{}, time.Time{}, pending[:n:n], true, mode, rows); err != nil {
				return err
			}
			pending = pending[n:]
		}
		return nil
	}
	// Cassandra keeps milliseconds: the bound after the last slot is a millisecond on.
	return st.readTotals(ctx, p, first, last.Add(time.Millisecond), nil, true, mode, rows)
}

// typedReads read the rows of a fold's slots of typed parts of one
// partition (a key's types: ps), a chunk of (type, slot) pairs a read,
// whatever their types: a fold of a key's 50 types and 8 slots each reads
// 7 chunks, not 50 ranges (one read a type was most of a fold's time).
func (st *Store) typedReads(ps []part, pending map[part][]time.Time, mode readMode, rows map[part]map[time.Time]*total) []func(context.Context) error {
	if len(ps) == 0 {
		return nil
	}
	type pair struct {
		typ  string
		slot time.Time
	}
	byType := make(map[string]part, len(ps))
	var pairs []pair
	for _, p := range ps {
		_, typ, _ := storage.SplitTypedKey(p.key)
		byType[typ] = p
		for _, t := range pending[p] {
			pairs = append(pairs, pair{typ, t})
		}
	}
	_, where, args := ps[0].rows() // … AND type = ?: replaced by the pairs
	where = strings.TrimSuffix(where, " AND type = ?")
	args = args[:len(args)-1]
	var mu sync.Mutex // chunks may share a part's rows
	var fns []func(context.Context) error
	for len(pairs) > 0 {
		n := min(len(pairs), inList(kindUsers, mode))
		chunk := pairs[:n:n]
		pairs = pairs[n:]
		fns = append(fns, func(ctx context.Context) error {
			a := slices.Clone(args)
			for _, c := range chunk {
				a = append(a, c.typ, c.slot)
			}
			in := strings.Repeat("(?, ?), ", len(chunk))
			q := st.s.Query("SELECT type, slot, sketch, through, TTL(through) FROM typed_users WHERE "+where+" AND (type, slot) IN ("+in[:len(in)-2]+")", a...).
				WithContext(ctx).PageSize(usersPage)
			if mode == forFoldSerial {
				q = q.Consistency(gocql.Serial)
			}
			iter := q.Iter()
			for {
				var typ string
				var slot time.Time
				var ttl *int
				t := &total{}
				if !iter.Scan(&typ, &slot, &t.sketch, &t.through, &ttl) {
					break
				}
				if ttl != nil {
					t.ttl = *ttl
				}
				p, ok := byType[typ]
				if !ok {
					continue
				}
				mu.Lock()
				rows[p][slot.UTC()] = t
				mu.Unlock()
			}
			return iter.Close()
		})
	}
	return fns
}

// applyParts adds contributions to the rows of parts of one partition
// (I4): a conditional batch per chunk of rows, each row under its own
// condition, so a backlog costs a Paxos round per chunk, not per row, and
// a key's 50 types one round where their rows fit in one.
func (st *Store) applyParts(ctx context.Context, ps []part, all map[part]map[time.Time][]contribution) error {
	// Parts in a fixed order, and each part's slots in time order.
	slices.SortFunc(ps, func(a, b part) int { return strings.Compare(a.key, b.key) })
	pending := make(map[part][]time.Time, len(ps))
	rows := make(map[part]map[time.Time]*total, len(ps))
	for _, p := range ps {
		for t := range all[p] {
			pending[p] = append(pending[p], t)
		}
		slices.SortFunc(pending[p], func(a, b time.Time) int { return a.Compare(b) })
		rows[p] = map[time.Time]*total{}
	}
	mode := forFold // a stale row only fails its condition, and is read again at SERIAL
	for range casTries {
		var reads []func(context.Context) error
		var typed []part
		for _, p := range ps {
			switch {
			case len(pending[p]) == 0:
			case p.typed():
				typed = append(typed, p)
			default:
				reads = append(reads, func(ctx context.Context) error { return st.readPending(ctx, p, pending[p], mode, rows[p]) })
			}
		}
		reads = append(reads, st.typedReads(typed, pending, mode, rows)...)
		if err := fanOut(ctx, 4, reads); err != nil {
			return err
		}
		mode = forFoldSerial
		var chunks [][]rowUpdate
		var chunk []rowUpdate
		size := 0
		for _, p := range ps {
			for _, t := range pending[p] {
				u, ok, err := st.nextRow(p, t, rows[p][t], all[p][t])
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if len(chunk) > 0 && (len(chunk) == casChunkRows || size+u.size > casChunkBytes) {
					chunks, chunk, size = append(chunks, chunk), nil, 0
				}
				chunk, size = append(chunk, u), size+u.size
			}
		}
		if len(chunk) > 0 {
			chunks = append(chunks, chunk)
		}
		var mu sync.Mutex
		again := map[part][]time.Time{}
		fns := make([]func(context.Context) error, len(chunks))
		for i, c := range chunks {
			fns[i] = func(ctx context.Context) error {
				b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial).WithContext(ctx)
				for _, u := range c {
					b.Query(u.stmt, u.args...)
					if u.packStmt != "" {
						b.Query(u.packStmt, u.packArgs...) // with its row, or not at all
					}
				}
				applied, iter, err := st.s.MapExecuteBatchCAS(b, map[string]any{})
				if iter != nil {
					iter.Close()
				}
				if err != nil && !retryableCAS(err) {
					return err
				}
				if !applied {
					// Another folder got there first (or the outcome is
					// unknown): read again, add what the rows lack.
					mu.Lock()
					for _, u := range c {
						again[u.part] = append(again[u.part], u.slot)
					}
					mu.Unlock()
				}
				return nil
			}
		}
		if err := fanOut(ctx, 4, fns); err != nil {
			return err
		}
		if len(again) == 0 {
			return nil
		}
		for _, p := range ps {
			slices.SortFunc(again[p], func(a, b time.Time) int { return a.Compare(b) })
			pending[p] = again[p]
			for _, t := range again[p] {
				delete(rows[p], t)
			}
		}
	}
	return fmt.Errorf("rows of %v: contended", ps[0].partition())
}

const (
	casChunkRows  = 100
	casChunkBytes = 32 << 10 // under Cassandra's default batch_size_fail_threshold (50 KiB)
)

type rowUpdate struct {
	part part
	slot time.Time
	stmt string
	args []any
	size int
	// The row's entry in its pack (pack.go), when its resolution is packed.
	packStmt string
	packArgs []any
}

// nextRow is a row's update: its values with the contributions it does not
// hold yet, under the condition that it is still as read. ok is false when
// it holds them all.
func (st *Store) nextRow(p part, slot time.Time, row *total, cs []contribution) (u rowUpdate, ok bool, err error) {
	if row == nil {
		row = &total{}
	}
	n := row.n
	groups, err := decodeMap(row.groups)
	if err != nil {
		return u, false, err
	}
	through, err := decodeMap(row.through)
	if err != nil {
		return u, false, err
	}
	var sk hll.Sketch
	if len(row.sketch) > 0 {
		if err := sk.MergeBinary(row.sketch); err != nil {
			return u, false, err
		}
	}
	var ret time.Duration
	minRet := time.Duration(-1)
	fresh := false
	for _, c := range cs {
		if row.covers(p, c.m) {
			continue
		}
		fresh = true
		ret = max(ret, c.m.ret)
		if minRet < 0 || c.m.ret < minRet {
			minRet = c.m.ret
		}
		k := throughKey(p, c.m)
		through[k] = max(through[k], c.m.mt)
		if p.kind == kindUsers {
			if err := sk.MergeBinary(c.sketch); err != nil {
				return u, false, err
			}
			continue
		}
		n += c.n
		storage.AddGroup(groups, c.group, c.n) // bounded: a row is one value
	}
	if !fresh {
		return u, false, nil
	}
	// The shortest retention of what the row holds (unions.go), from a
	// row's first fold on; a row folded before this release has none.
	if r, ok := through[retKey]; ok || row.through == nil {
		if !ok || int64(minRet.Seconds()) < r {
			through[retKey] = int64(minRet.Seconds())
		}
	}
	ttl := max(row.ttl, ttlUntil(slot.Add(p.res.Duration()+ret), time.Now()))
	if ttl == 0 {
		return u, false, nil // expired with what it counts
	}
	var old any // a row not there: IF through = null
	if row.through != nil {
		old = row.through
	}
	tb := encodeThrough(p.kind, through)
	u = rowUpdate{part: p, slot: slot, size: 100 + len(tb)}
	if p.kind == kindUsers {
		b := sk.Append(nil)
		// n, the sketch's estimate, in the same write, through marked
		// (usersMark: no release before can rewrite the row after it).
		n = int64(sk.Estimate())
		table, where, args := p.rows()
		u.stmt = "UPDATE " + table + " USING TTL ? SET sketch = ?, n = ?, through = ? WHERE " + where + " AND slot = ? IF through = ?"
		u.args = append(append([]any{ttl, b, n, tb}, args...), slot, old)
		u.size += len(b)
	} else {
		u.stmt = "UPDATE totals USING TTL ? SET n = ?, groups = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?"
		gb := encodeCounts(groups)
		u.args = []any{ttl, n, gb, tb, p.kind, p.a, p.key, int8(p.res), p.period, slot, old}
		u.size += len(gb)
	}
	if packed(p.res) {
		u.packStmt, u.packArgs = packUpdate(p, slot, n, ttl)
		u.size += 100
	}
	return u, true, nil
}

// noteBehind keeps the oldest of a partner's manifests not applied: those
// waiting as a round starts (kept if the round fails), then those it
// leaves above upTo. Past a round's end in a partition, the next manifest
// is taken to be as old as the end.
func (f *folder) noteBehind(partner string, waiting [ClaimBuckets][]int64, upTo, end [ClaimBuckets]int64) {
	oldest := int64(math.MaxInt64)
	for b, mts := range waiting {
		i, _ := slices.BinarySearch(mts, upTo[b]+1)
		switch {
		case i < len(mts):
			oldest = min(oldest, mts[i])
		case end[b] < math.MaxInt64 && len(mts) > 0:
			oldest = min(oldest, end[b])
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if oldest == math.MaxInt64 {
		delete(f.behind, partner)
	} else {
		f.behind[partner] = oldest
	}
}

func (f *folder) noteApplied(partner string, was, now [ClaimBuckets]int64) {
	at := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for b := range ClaimBuckets {
		if now[b] > was[b] {
			ck := claimKey{partner, int16(b)}
			f.applied[ck] = append(f.applied[ck], appliedMark{now[b], at})
		}
	}
}

// drop deletes, at most once a minute per claim partition, the manifests
// this process applied more than dropLag ago (by its own clock, whatever
// their manifest times): below where any reader starts by then. What a
// process that stopped applied is never dropped, only expires.
func (f *folder) drop(ctx context.Context, partner string) {
	now := time.Now()
	for b := range ClaimBuckets {
		ck := claimKey{partner, int16(b)}
		f.mu.Lock()
		marks := f.applied[ck]
		var to int64
		k := 0
		for k < len(marks) && !marks[k].at.After(now.Add(-dropLag)) {
			to = max(to, marks[k].v)
			k++
		}
		last, ok := f.dropped[ck]
		due := to > 0 && (!ok || now.Sub(last) >= dropEvery)
		if due {
			f.dropped[ck] = now
			f.applied[ck] = marks[k:]
		}
		f.mu.Unlock()
		if !due {
			continue
		}
		_ = f.st.s.Query("DELETE FROM claims WHERE partner_id = ? AND bucket = ? AND id > ? AND id <= ?", partner, int16(b), "~~", manifestBound(to)).
			WithContext(ctx).Exec()
	}
}

// readManifestTimes reads the times of the first (at most limit) manifests
// above from in each of a partner's claim partitions, in order: their ids
// only, so a fold learns how far its round goes before it reads any.
func (st *Store) readManifestTimes(ctx context.Context, partner string, from [ClaimBuckets]int64, limit int) ([ClaimBuckets][]int64, error) {
	var out [ClaimBuckets][]int64
	fns := make([]func(context.Context) error, ClaimBuckets)
	for b := range ClaimBuckets {
		fns[b] = func(ctx context.Context) error {
			iter := st.s.Query("SELECT id FROM claims WHERE partner_id = ? AND bucket = ? AND id > ? AND id <= ? LIMIT ?",
				partner, int16(b), manifestBound(from[b]), manifestsEnd, limit).WithContext(ctx).Iter()
			var id string
			for iter.Scan(&id) {
				if mt, ok := manifestTime(id); ok {
					out[b] = append(out[b], mt)
				}
			}
			return iter.Close()
		}
	}
	return out, fanOut(ctx, ClaimBuckets, fns)
}
