package reporter

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// A report reads the coarsest stored slots that tile its buckets: whole
// UTC weeks (from Monday) and days where a bucket covers them, then six
// hours, hours, half hours, quarter hours, minutes. A day in Asia/Kolkata (18:30 to 18:30 UTC) is a
// half hour, five hours, three six-hour slots and a half hour; a UTC day is
// one slot; an hour in Asia/Kolkata is one hour from half past, the only
// span that slot is read for (anywhere else half hours and hours tile as
// few). Each slot read is counted in the bucket holding its start.

// span is the slots of one resolution starting in [from, to).
type span struct{ from, to time.Time }

// tiling is what a report reads, by resolution.
type tiling [len(resolutions)][]span

// resolutions, coarsest first.
var resolutions = [...]storage.Res{storage.Week, storage.Day, storage.SixHours, storage.Hour, storage.HalfPastHour, storage.HalfHour, storage.QuarterHour, storage.Minute}

func aligned(t time.Time, r storage.Res) bool { return r.Slot(t).Equal(t) }

// fits tells whether a slot of resolution i starts at t and ends by end
// (an hour from half past: ends at end).
func fits(i int, t, end time.Time) bool {
	r := resolutions[i]
	// The length first: it is cheaper than the alignment (a week's or a
	// day's slot of t), and rules out most coarse slots of a fine bucket.
	if stop := t.Add(r.Duration()); r == storage.HalfPastHour && !stop.Equal(end) || stop.After(end) {
		return false
	}
	return aligned(t, r)
}

// add tiles [from, to) greedily: at each instant, the coarsest slot that
// starts there and fits. Bounds are taken to the minute (every zone since
// 1972 is offset by whole minutes).
func (tl *tiling) add(from, to time.Time) {
	t, end := storage.Minute.Slot(from), storage.Minute.Slot(to)
	// One slot (an hour or a UTC day of a series): what the loop below
	// would find, without trying each coarser resolution at each step. A
	// 720-hour series was a tenth of its report's CPU here.
	if d := end.Sub(t); d > 0 {
		for i, r := range resolutions {
			if r.Duration() == d && aligned(t, r) {
				tl.merge(i, span{t, end})
				return
			}
		}
	}
	tl.memoGreedy(t, end)
}

// memoGreedy merges the greedy tiling of [t, end) into tl, from tilings
// memo when it was made before: a report in a zone offset from UTC tiles
// the same buckets again and again (30 days in Asia/Kolkata: 30 greedy
// tilings of ten slots each, a tenth of that report's CPU).
func (tl *tiling) memoGreedy(t, end time.Time) {
	k := [2]int64{t.Unix(), end.Unix()}
	tilings.mu.Lock()
	one, ok := tilings.m[k]
	tilings.mu.Unlock()
	if !ok {
		one = &tiling{}
		one.greedy(t, end)
		tilings.mu.Lock()
		if len(tilings.m) >= maxTilings {
			clear(tilings.m) // simple over smart: a full memo starts again
		}
		tilings.m[k] = one
		tilings.mu.Unlock()
	}
	// Merged span by span: tl never shares a memo's slices, which stay
	// as they were made.
	for i, ss := range one {
		for _, s := range ss {
			tl.merge(i, s)
		}
	}
}

// maxTilings bounds the memo of greedy tilings (a tiling of a bucket is a
// few hundred bytes; the key is the bucket, so any range asked for adds at
// most its buckets).
const maxTilings = 8192

var tilings = struct {
	mu sync.Mutex
	m  map[[2]int64]*tiling
}{m: map[[2]int64]*tiling{}}

// greedy tiles [t, end) (whole minutes), at each instant the coarsest slot
// that starts there and fits.
func (tl *tiling) greedy(t, end time.Time) {
	for t.Before(end) {
		for i, r := range resolutions {
			if !fits(i, t, end) {
				continue
			}
			start := t
		run:
			for fits(i, t, end) {
				t = t.Add(r.Duration())
				// Stop where a coarser slot would start and fit.
				for j := range i {
					if fits(j, t, end) {
						break run
					}
				}
			}
			tl.merge(i, span{start, t})
			break
		}
	}
}

// merge adds a span, joining it to the last one when they touch.
func (tl *tiling) merge(i int, s span) {
	if n := len(tl[i]); n > 0 && tl[i][n-1].to.Equal(s.from) {
		tl[i][n-1].to = s.to
		return
	}
	tl[i] = append(tl[i], s)
}

// coalesceRows is the most rows a sub-day resolution's slots may become
// when read as a finer resolution's (coalesced).
const coalesceRows = 64

// coalesced is the tiling as a count reads it: each resolution finer than
// a day whose slots a finer resolution read anyway holds in at most
// coalesceRows rows is read as that one's. A row of counts costs a store
// little next to a statement (Cassandra reads one partition of one
// resolution a statement): the ends of a month in Asia/Kolkata are 48 half
// hours in one statement, not half hours, hours and six hours in three.
// Sketches are not read so: each finer one costs its bytes.
func (tl *tiling) coalesced() *tiling {
	out := *tl
	for i, r := range resolutions {
		if len(out[i]) == 0 || r.Duration() >= storage.Day.Duration() {
			continue
		}
		for j := i + 1; j < len(resolutions); j++ {
			f := resolutions[j]
			if len(out[j]) == 0 || f == storage.HalfPastHour || r.Duration()%f.Duration() != 0 {
				continue // not a grid that holds r's slots
			}
			rows := 0
			for _, s := range out[i] {
				rows += int(s.to.Sub(s.from) / f.Duration())
			}
			if rows <= coalesceRows {
				out[j] = joined(out[j], out[i])
				out[i] = nil
			}
			break // the coarsest finer one read: the fewest rows
		}
	}
	return &out
}

// joined is the spans of a and b, which do not overlap, in order, those
// that touch made one.
func joined(a, b []span) []span {
	all := slices.Concat(a, b)
	slices.SortFunc(all, func(x, y span) int { return x.from.Compare(y.from) })
	out := all[:0]
	for _, s := range all {
		if n := len(out); n > 0 && out[n-1].to.Equal(s.from) {
			out[n-1].to = s.to
			continue
		}
		out = append(out, s)
	}
	return out
}

// has reports whether the tiling reads the slot of resolution i at t.
func (tl *tiling) has(i int, t time.Time) bool {
	ss := tl[i]
	k := sort.Search(len(ss), func(k int) bool { return ss[k].to.After(t) })
	return k < len(ss) && !t.Before(ss[k].from)
}

// read is the query of resolution i's spans: one for all of them (the
// backend reads the slots they name, Cassandra several partitions' in
// parallel, a month of a Kolkata report's half hours in a statement or
// two); ok false when the tiling has none.
func (tl *tiling) read(i int) (from, to time.Time, only storage.Spans, ok bool) {
	ss := tl[i]
	if len(ss) == 0 {
		return from, to, nil, false
	}
	from, to = ss[0].from, ss[len(ss)-1].to
	if len(ss) > 1 {
		only = make(storage.Spans, len(ss))
		for k, s := range ss {
			only[k] = storage.Span{From: s.from, To: s.to}
		}
	}
	return from, to, only, true
}

// seriesTiling tiles each bucket of the plan (read only: shared by the
// report's reads).
func (p plan) seriesTiling() *tiling {
	if p.seriesTl != nil {
		return p.seriesTl
	}
	return p.tileSeries()
}

// wholeTiling tiles the whole range, for figures of the range only.
func (p plan) wholeTiling() *tiling {
	if p.wholeTl != nil {
		return p.wholeTl
	}
	return p.tileWhole()
}

func (p plan) tileSeries() *tiling {
	tl := &tiling{}
	// Buckets of one length that are each one slot of a resolution (hours
	// anywhere, UTC days) are one span of it: what adding each bucket
	// gives, without 720 adds (plan.list was a tenth of an hourly report's
	// CPU).
	if p.step > 0 {
		for i, r := range resolutions {
			if r.Duration() == p.step && aligned(p.from, r) {
				tl.merge(i, span{p.from, p.to})
				return tl
			}
		}
	}
	for i, b := range p.buckets {
		end := p.to
		if i+1 < len(p.buckets) {
			end = p.buckets[i+1]
		}
		tl.add(b, end)
	}
	return tl
}

// horizonSkew is how far apart the clocks of this reporter and of the
// writers of a row's TTL (workers, Cassandra) may be: the buckets this
// close to the horizon are read as the series reads them.
const horizonSkew = 5 * time.Minute

// countsTiling is the whole tiling as counts read it.
func (p plan) countsTiling() *tiling {
	if p.countsTl != nil {
		return p.countsTl
	}
	return p.tileCounts(p.wholeTiling())
}

// tileCounts is whole coalesced, unless the retention horizon crosses the
// range: then a slot counts what its series reads (tileWhole), and a finer
// row near the horizon may have lost events its coarser one still counts.
func (p plan) tileCounts(whole *tiling) *tiling {
	if p.horizonIn() {
		return whole
	}
	return whole.coalesced()
}

// horizonIn tells whether the horizon is within horizonSkew of the range.
func (p plan) horizonIn() bool {
	return !p.horizon.IsZero() && p.horizon.Add(horizonSkew).After(p.from) && p.horizon.Add(-horizonSkew).Before(p.to)
}

// tileWhole tiles the range, and the buckets near the horizon apart, as
// the series does (see plan.horizon).
func (p plan) tileWhole() *tiling {
	tl := &tiling{}
	first, last := p.index(p.horizon.Add(-horizonSkew)), p.index(p.horizon.Add(horizonSkew))
	if p.horizonIn() {
		if first < 0 {
			first = 0
		}
		if last < 0 {
			last = len(p.buckets) - 1
		}
		end := func(k int) time.Time {
			if k+1 < len(p.buckets) {
				return p.buckets[k+1]
			}
			return p.to
		}
		tl.add(p.from, p.buckets[first])
		for k := first; k <= last; k++ {
			tl.add(p.buckets[k], end(k))
		}
		tl.add(end(last), p.to)
		return tl
	}
	tl.add(p.from, p.to)
	return tl
}

// readCounts calls fn (serialised) with every slot of the tiling.
func (s *Service) readCounts(ctx context.Context, rd storage.Reads, tl *tiling, q storage.CountsQuery, fn func(storage.Slot)) error {
	return s.readCountsEach(ctx, rd, tl, []storage.CountsQuery{q}, []func(storage.Slot){fn})
}

// readCountsEach is readCounts of each of qs (rollups of one key) with
// fns[i], read together (storage.CountsEach).
func (s *Service) readCountsEach(ctx context.Context, rd storage.Reads, tl *tiling, qs []storage.CountsQuery, fns []func(storage.Slot)) error {
	var mu sync.Mutex
	var reads []func(context.Context) error
	for i, r := range resolutions {
		from, to, only, ok := tl.read(i)
		if !ok {
			continue
		}
		reads = append(reads, func(ctx context.Context) error {
			qs := slices.Clone(qs)
			for k := range qs {
				qs[k].Res, qs[k].From, qs[k].To, qs[k].Only = r, from, to, only
			}
			each, err := storage.CountsEach(ctx, rd, qs)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for k, slots := range each {
				for _, sl := range slots {
					if tl.has(i, sl.Start) {
						fns[k](sl)
					}
				}
			}
			return nil
		})
	}
	return parallel(ctx, 8, reads)
}

// readUsers calls fn (serialised) with the sketch of every slot of the tiling.
func (s *Service) readUsers(ctx context.Context, rd storage.Reads, tl *tiling, scope storage.UserScope, key string, fn func(start time.Time, sk []byte) error) error {
	var mu sync.Mutex
	var fns []func(context.Context) error
	for i, r := range resolutions {
		from, to, only, ok := tl.read(i)
		if !ok {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			return rd.Users(ctx, storage.UsersQuery{Scope: scope, Key: key, Res: r, From: from, To: to, Only: only}, func(start time.Time, sk []byte) error {
				if !tl.has(i, start) {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				return fn(start, sk)
			})
		})
	}
	return parallel(ctx, 8, fns)
}

// equal tells whether two tilings read the same slots.
func (tl *tiling) equal(o *tiling) bool {
	for i := range tl {
		if !slices.EqualFunc(tl[i], o[i], func(a, b span) bool { return a.from.Equal(b.from) && a.to.Equal(b.to) }) {
			return false
		}
	}
	return true
}

// slots is how many slots the tiling reads.
func (tl *tiling) slots() int {
	n := 0
	for i, ss := range tl {
		for _, s := range ss {
			n += int(s.to.Sub(s.from) / resolutions[i].Duration())
		}
	}
	return n
}

// oneSlotEach tells whether every bucket of the plan is one stored slot
// (hours in UTC or Europe/Berlin, minutes, UTC days): then a point's users
// are that slot's estimate, and the series needs no sketch.
func (p plan) oneSlotEach(tl *tiling) bool {
	res := -1
	for i, ss := range tl {
		if len(ss) == 0 {
			continue
		}
		if res >= 0 {
			return false
		}
		res = i
	}
	return res >= 0 && tl.slots() == len(p.buckets)
}

// uniqueUsers fills each point's uniqueUsers and returns the range's.
// Where each point is one stored slot and the range is tiled by far fewer
// (720 hours, 30 days), the points are the slots' estimates and the range
// is the union of its coarse slots: a store that keeps estimates then reads
// 30 sketches, not 720. Else dense slot sketches (busy hours) are merged into their point as they
// come; sparse ones (half hours, quiet hours) are kept and counted at the
// end through one hll.Union, which costs their entries however many a
// point has (a Kathmandu hour is two quarters and a half hour).
func (s *Service) uniqueUsers(ctx context.Context, p plan, points []pointAcc, scope storage.UserScope, key string) (int64, error) {
	series := p.seriesTiling()
	if p.oneSlotEach(series) {
		if rng, ok := p.estimatesFrom(ctx, series, p.wholeTiling(), len(points)); ok {
			return s.estimatedUsers(ctx, p, series, rng, points, scope, key)
		}
	}
	if p.asUnions() {
		n, err := s.unionUsers(ctx, p, points, scope, key)
		if !errors.Is(err, errors.ErrUnsupported) {
			return n, err
		}
	}
	dense := make([]hll.Sketch, len(points))
	// The sparse ones, copied (b is the store's until fn returns) into one
	// buffer reused across reports: a report reads thousands. A point
	// keeps at most maxKept bytes there, the size of a dense sketch; what
	// comes past that is merged into its sketch at once, so a report holds
	// at most about 32 KiB a point however many slots it reads.
	kept := make([]int, len(points))
	type part struct{ point, from, to int }
	var parts []part
	var buf []byte
	select {
	case buf = <-sketchBufs:
	default:
	}
	defer func() {
		if cap(buf) <= 32<<20 {
			select {
			case sketchBufs <- buf[:0]:
			default:
			}
		}
	}()
	err := s.readUsers(ctx, p.reads, series, scope, key, func(start time.Time, b []byte) error {
		i := p.index(start)
		if i < 0 || len(b) == 0 {
			return nil
		}
		if hll.IsDense(b) || kept[i]+len(b) > maxKept {
			return dense[i].MergeBinary(b)
		}
		kept[i] += len(b)
		parts = append(parts, part{i, len(buf), len(buf) + len(b)})
		buf = append(buf, b...)
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Each point's parts together, in the order read.
	slices.SortStableFunc(parts, func(a, b part) int { return a.point - b.point })
	sparse := make([][]part, len(points))
	for k := 0; k < len(parts); {
		j := k
		for j < len(parts) && parts[j].point == parts[k].point {
			j++
		}
		sparse[parts[k].point] = parts[k:j]
		k = j
	}
	all := &hll.Sketch{}
	if len(points) > 8 {
		all = hll.Dense() // many merges: no allocation for each
	}
	var u hll.Union
	for i := range points {
		var n int64
		if !dense[i].Empty() {
			for _, pt := range sparse[i] {
				if err := dense[i].MergeBinary(buf[pt.from:pt.to]); err != nil {
					return 0, err
				}
			}
			n = int64(dense[i].Estimate())
			all.Merge(&dense[i])
		} else {
			for _, pt := range sparse[i] {
				if err := u.MergeBinary(buf[pt.from:pt.to]); err != nil {
					return 0, err
				}
			}
			n = int64(u.Flush(all))
		}
		points[i].users = &n
	}
	return int64(all.Estimate()), nil
}

// estimatesFrom tells whether a series of one stored slot a point reads
// its points' users as the slots' estimates, and the tiling whose union
// is then the range's users: the whole range's where it is far fewer
// slots than the points (its sketches are read); else, on a store that
// keeps unions, the series' own slots, whose part that has ended is one
// kept sketch. 30 UTC days were 30 sketches of up to 8 KiB read and
// merged, at twice the reporter's CPU, for a figure one kept sketch gives.
// The points' own slots, not the whole tiling's weeks: a day whose rows
// expired before its week's (a retention shortened, or a sub-system's
// partners kept for different times) then counts in neither the point nor
// the range, as on the merged path (TestEstimatesMixedRetention).
func (p plan) estimatesFrom(ctx context.Context, series, whole *tiling, points int) (*tiling, bool) {
	switch n := whole.slots(); {
	case n*4 <= points:
		return whole, true
	case n >= points:
		return nil, false
	}
	if _, err := p.unionReader(ctx); err != nil {
		return nil, false
	}
	return series, true
}

// estimatedUsers is uniqueUsers from each point's one slot's estimate,
// and the union of rng (estimatesFrom): two reads, so on a store
// without a read view (Cassandra) a batch stored between them may be in
// one and not the other, as the series and the total already may.
func (s *Service) estimatedUsers(ctx context.Context, p plan, series, rng *tiling, points []pointAcc, scope storage.UserScope, key string) (int64, error) {
	for i := range points {
		points[i].users = new(int64)
	}
	all := hll.Dense()
	err := parallel(ctx, 2, []func(context.Context) error{
		func(ctx context.Context) error {
			for i, r := range resolutions {
				from, to, only, ok := series.read(i)
				if !ok {
					continue
				}
				q := storage.UsersQuery{Scope: scope, Key: key, Res: r, From: from, To: to, Only: only}
				return p.reads.UserEstimates(ctx, q, func(start time.Time, n uint64) error {
					if k := p.index(start); k >= 0 && series.has(i, start) {
						*points[k].users = int64(n)
					}
					return nil
				})
			}
			return nil
		},
		func(ctx context.Context) error { return s.rangeUsers(ctx, p, rng, scope, key, all) },
	})
	if err != nil {
		return 0, err
	}
	return int64(all.Estimate()), nil
}

// unionSlots is how many slots a point must be on average for its users to
// be asked of the store as a union (storage.UnionReader): a day in
// Asia/Kolkata is ten, a month in UTC a dozen; an hour in Asia/Kathmandu
// (three) is merged here.
const unionSlots = 4

// unionReader is the plan's reads as a storage.UnionReader, when the
// store behind has one (errors.ErrUnsupported when not).
func (p plan) unionReader(ctx context.Context) (storage.UnionReader, error) {
	u, ok := p.reads.(storage.UnionReader)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	if err := u.UnionEstimates(ctx, storage.UnionsQuery{}, nil); err != nil {
		return nil, err // a wrapper of a store without them: ErrUnsupported at once
	}
	return u, nil
}

// unions are the slots of each bucket, as the series tiles them: made
// once for the plan's reads (a report asks for them for its counts and
// for its users), which only read them.
func (p plan) unions() [][]storage.Tile {
	if p.unionsOf == nil {
		return p.makeUnions()
	}
	p.unionsOf.once.Do(func() { p.unionsOf.v = p.makeUnions() })
	return p.unionsOf.v
}

func (p plan) makeUnions() [][]storage.Tile {
	out := make([][]storage.Tile, len(p.buckets))
	for i, b := range p.buckets {
		end := p.to
		if i+1 < len(p.buckets) {
			end = p.buckets[i+1]
		}
		var tl tiling
		tl.add(b, end)
		for r, ss := range tl {
			for _, sp := range ss {
				out[i] = append(out[i], storage.Tile{Res: resolutions[r], From: sp.from, To: sp.to})
			}
		}
	}
	return out
}

// asUnions tells whether the series is read as unions: a point is
// unionSlots slots or more on average.
func (p plan) asUnions() bool {
	return p.seriesTiling().slots() >= unionSlots*len(p.buckets)
}

// unionUsers is uniqueUsers from the store's estimates of each point's
// union of slots, and the union of the whole range's tiling;
// errors.ErrUnsupported when the store has no UnionReader.
func (s *Service) unionUsers(ctx context.Context, p plan, points []pointAcc, scope storage.UserScope, key string) (int64, error) {
	u, err := p.unionReader(ctx)
	if err != nil {
		return 0, err
	}
	q := storage.UnionsQuery{Scope: scope, Key: key, Unions: p.unions()}
	for i := range points {
		points[i].users = new(int64)
	}
	all := hll.Dense()
	err = parallel(ctx, 2, []func(context.Context) error{
		func(ctx context.Context) error {
			return u.UnionEstimates(ctx, q, func(i int, n uint64) error {
				*points[i].users = int64(n)
				return nil
			})
		},
		func(ctx context.Context) error { return s.rangeUsers(ctx, p, p.wholeTiling(), scope, key, all) },
	})
	if err != nil {
		return 0, err
	}
	return int64(all.Estimate()), nil
}

// rangeUsers merges into all the users of the range's tiling whole: the
// slots that ended before today's UTC day (by this reporter's clock) as one
// union, whose sketch a store may keep (storage.UnionReader), and the rest
// as read. A store without unions reads them all.
func (s *Service) rangeUsers(ctx context.Context, p plan, whole *tiling, scope storage.UserScope, key string, all *hll.Sketch) error {
	var mu sync.Mutex
	merge := func(_ time.Time, b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return all.MergeBinary(b)
	}
	u, err := p.unionReader(ctx)
	if errors.Is(err, errors.ErrUnsupported) {
		return s.readUsers(ctx, p.reads, whole, scope, key, merge)
	} else if err != nil {
		return err
	}
	cut := storage.Day.Slot(s.now())
	var closed []storage.Tile
	rest := &tiling{}
	open := false
	for i, ss := range whole {
		r := resolutions[i]
		end := r.Slot(cut) // the slots before it ended by the cut
		for _, sp := range ss {
			if sp.from.Before(end) {
				closed = append(closed, storage.Tile{Res: r, From: sp.from, To: minTime(sp.to, end)})
			}
			if sp.to.After(end) {
				rest[i] = append(rest[i], span{maxTime(sp.from, end), sp.to})
				open = true
			}
		}
	}
	if slotsIn(closed) < unionSlots {
		// A few slots: read them with the rest, not as a union.
		return s.readUsers(ctx, p.reads, whole, scope, key, merge)
	}
	var fns []func(context.Context) error
	if len(closed) > 0 {
		fns = append(fns, func(ctx context.Context) error {
			q := storage.UnionsQuery{Scope: scope, Key: key, Unions: [][]storage.Tile{closed}}
			return u.UnionSketches(ctx, q, func(_ int, b []byte) error { return merge(time.Time{}, b) })
		})
	}
	if open {
		fns = append(fns, func(ctx context.Context) error { return s.readUsers(ctx, p.reads, rest, scope, key, merge) })
	}
	return parallel(ctx, 2, fns)
}

// slotsIn is how many slots tiles name.
func slotsIn(tiles []storage.Tile) int {
	n := 0
	for _, t := range tiles {
		n += int(t.To.Sub(t.From) / t.Res.Duration())
	}
	return n
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// maxKept is the sparse sketch bytes a point keeps for its union (the
// size of a dense sketch); a var for the tests that make it small.
var maxKept = hll.M

// sketchBufs are the buffers of the reports computed lately. Not a
// sync.Pool: a report allocates enough to run the GC several times over,
// which empties a pool, and regrowing a megabyte by doubling cost an eighth
// of a Kolkata hourly report's CPU.
var sketchBufs = make(chan []byte, 8)

type pointAcc struct {
	count int64
	users *int64
}

// parallel runs fns, at most n at once, and returns the first error.
func parallel(ctx context.Context, n int, fns []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, fn := range fns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
