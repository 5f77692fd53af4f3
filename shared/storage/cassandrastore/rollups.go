package cassandrastore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// A claim group's manifest holds its events' counts per (sub-system, event
// type, minute): every row of every rollup and resolution is derived from
// that, with the partner of the claim partition.
type mcell struct {
	Sub, Type string
	Minute    int64 // unix seconds
}

func (c mcell) String() string {
	b, _ := json.Marshal([]any{"m", c.Sub, c.Type, c.Minute})
	return string(b)
}

// parseCell reads a manifest cell. Manifests written before every
// resolution was kept hold ["s", sub-system, type, quarter] and ["p",
// partner, sub-system, quarter] cells: the first counts at the quarter's
// first minute, the second (the same events again) is skipped (ok false).
func parseCell(s string) (c mcell, ok bool, err error) {
	var a []any
	if err := json.Unmarshal([]byte(s), &a); err != nil || len(a) != 4 {
		return c, false, fmt.Errorf("cassandrastore: bad manifest cell %q", s)
	}
	kind, ok1 := a[0].(string)
	c.Sub, _ = a[1].(string)
	c.Type, _ = a[2].(string)
	m, ok2 := a[3].(float64)
	if !ok1 || !ok2 {
		return c, false, fmt.Errorf("cassandrastore: bad manifest cell %q", s)
	}
	c.Minute = int64(m)
	switch kind {
	case "m", "s":
		return c, true, nil
	case "p":
		return c, false, nil
	}
	return c, false, fmt.Errorf("cassandrastore: bad manifest cell %q", s)
}

func cellOf(e *event.Event) mcell {
	return mcell{e.SubSystemID, e.EventType, e.Timestamp.UTC().Truncate(time.Minute).Unix()}
}

// addr is a row of rollups (kind 'r', a = rollup) or user_sketches (kind
// 'u', a = scope), without its batch.
type addr struct {
	kind   byte
	a      int8
	key    string
	res    storage.Res
	period int
	slot   time.Time
}

func (a addr) part() foldKey { return foldKey{a.kind, a.a, a.key, a.res, a.period} }

// periodOf is the partition period of a slot: a UTC day of minutes or
// quarters (yyyymmdd), a month of hours (yyyymm), a year of days (yyyy).
func periodOf(res storage.Res, t time.Time) int {
	y, m, d := t.UTC().Date()
	switch res {
	case storage.Minute, storage.QuarterHour:
		return y*10000 + int(m)*100 + d
	case storage.Hour:
		return y*100 + int(m)
	}
	return y
}

// periodStart and nextPeriod walk partitions.
func periodStart(res storage.Res, t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	switch res {
	case storage.Minute, storage.QuarterHour:
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case storage.Hour:
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
}

func nextPeriod(res storage.Res, t time.Time) time.Time {
	t = periodStart(res, t)
	switch res {
	case storage.Minute, storage.QuarterHour:
		return t.AddDate(0, 0, 1)
	case storage.Hour:
		return t.AddDate(0, 1, 0)
	}
	return t.AddDate(1, 0, 0)
}

// periods are the partitions holding slots in [from, to).
func periods(res storage.Res, from, to time.Time) []int {
	var out []int
	for t := periodStart(res, from); t.Before(to); t = nextPeriod(res, t) {
		out = append(out, periodOf(res, t))
	}
	return out
}

// expand calls fn for each rollup row, and group, a cell of partner counts in.
func expand(partner string, c mcell, fn func(a addr, group string)) {
	t := time.Unix(c.Minute, 0).UTC()
	for _, res := range storage.Resolutions {
		slot := res.Slot(t)
		p := periodOf(res, slot)
		fn(addr{'r', int8(storage.SubSystemTypes), c.Sub, res, p, slot}, c.Type)
		fn(addr{'r', int8(storage.PartnerSubSystems), partner, res, p, slot}, c.Sub)
		fn(addr{'r', int8(storage.PartnerTypes), partner, res, p, slot}, c.Type)
	}
}

const (
	rollupStmt    = "INSERT INTO rollups (rollup, key, res, period, slot, batch_id, claims, groups, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?"
	healStmt      = "UPDATE rollups USING TIMESTAMP ? AND TTL ? SET claims[?] = ?, claim_groups = claim_groups + ? WHERE rollup = ? AND key = ? AND res = ? AND period = ? AND slot = ? AND batch_id = ?"
	sketchStmt    = "INSERT INTO user_sketches (scope, key, res, period, slot, batch_id, sketch) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?"
	claimGroupSep = "/"
)

func claimGroupKey(group string, grp int) string { return group + claimGroupSep + strconv.Itoa(grp) }

// groupOf is the group of a claim_groups key.
func groupOf(k string) string {
	if i := strings.LastIndex(k, claimGroupSep); i >= 0 {
		return k[:i]
	}
	return k
}

// rowCounts is a batch row: its total per claim group, and its counts by
// group, whole (a worker's complete row: groups) or per claim group (a
// healed row: claim_groups, keyed group/claim group, so each heal sets only
// its own entries). A complete row's few dozen groups, not groups × 32
// claim groups, keep rows of busy slots small.
type rowCounts struct {
	claims    map[int]int64
	groups    map[string]int64
	retention time.Duration
}

func (r *rowCounts) add(grp int, group string, n int64, retention time.Duration, perClaimGroup bool) {
	if r.claims == nil {
		r.claims, r.groups = map[int]int64{}, map[string]int64{}
	}
	r.claims[grp] += n
	if perClaimGroup {
		group = claimGroupKey(group, grp)
	}
	r.groups[group] += n
	r.retention = max(r.retention, retention)
}

// writeCounts writes this batch's row of every rollup slot its claimed
// events touch, complete: one entry per claim group (I3).
func (st *Store) writeCounts(ctx context.Context, batch gocql.UUID, events []event.Event, mine map[int]int, now time.Time) error {
	rows := map[addr]*rowCounts{}
	for i, grp := range mine {
		e := &events[i]
		ret := st.retentionOf(e)
		expand(e.PartnerID, cellOf(e), func(a addr, group string) {
			r := rows[a]
			if r == nil {
				r = &rowCounts{}
				rows[a] = r
			}
			r.add(grp, group, 1, ret, false)
		})
	}
	ts := batch.Time().UnixMicro()
	rs := rowSet{}
	for a, r := range rows {
		ttl := ttlUntil(a.slot.Add(a.res.Duration()+r.retention), now)
		if ttl == 0 {
			continue
		}
		rs.add(a.part().String(), rollupStmt, a.a, a.key, int8(a.res), a.period, a.slot, batch, r.claims, r.groups, true, ts, ttl)
	}
	if err := st.execRows(ctx, rs); err != nil {
		return err
	}
	for a := range rows {
		st.folder.touch(a.part(), a.slot)
	}
	return nil
}

// writeUsers writes this batch's user sketch of every slot its events
// touch. idx are the events stored by this batch or found stored by a
// batch that may have stopped before its sketches: merging is idempotent,
// so counting a user again changes nothing.
func (st *Store) writeUsers(ctx context.Context, batch gocql.UUID, events []event.Event, idx []int, now time.Time) error {
	type acc struct {
		sk        hll.Sketch
		retention time.Duration
	}
	rows := map[addr]*acc{}
	for _, i := range idx {
		e := &events[i]
		u := storage.UserOf(e)
		if u == "" {
			continue
		}
		h, ret := hll.Hash(u), st.retentionOf(e)
		for _, res := range storage.Resolutions {
			slot := res.Slot(e.Timestamp)
			for _, sc := range storage.UserScopes {
				a := addr{'u', int8(sc), sc.Key(e), res, periodOf(res, slot), slot}
				r := rows[a]
				if r == nil {
					r = &acc{}
					rows[a] = r
				}
				r.sk.AddHash(h)
				r.retention = max(r.retention, ret)
			}
		}
	}
	ts := batch.Time().UnixMicro()
	rs := rowSet{}
	for a, r := range rows {
		ttl := ttlUntil(a.slot.Add(a.res.Duration()+r.retention), now)
		if ttl == 0 {
			continue
		}
		rs.add(a.part().String(), sketchStmt, a.a, a.key, int8(a.res), a.period, a.slot, batch, r.sk.Append(nil), ts, ttl)
	}
	if err := st.execRows(ctx, rs); err != nil {
		return err
	}
	for a := range rows {
		st.folder.touch(a.part(), a.slot)
	}
	return nil
}

// healForeign rewrites, from their manifests, the count entries of other
// batches' claim groups this batch met (I3): the batch that claimed them may
// have stopped before writing its counts.
func (st *Store) healForeign(ctx context.Context, fs []foreign, now time.Time) error {
	done := map[foreign]bool{}
	var fns []func(context.Context) error
	for _, f := range fs {
		if done[f] {
			continue
		}
		done[f] = true
		fns = append(fns, func(ctx context.Context) error {
			var cells map[string]int64
			var retention int
			err := st.s.Query("SELECT cells, retention FROM claims WHERE partner_id = ? AND bucket = ? AND id = ?",
				f.partner, f.bucket, manifestID(f.batch, f.grp)).Consistency(gocql.Serial).ScanContext(ctx, &cells, &retention)
			if err == gocql.ErrNotFound {
				return nil // past the horizon: long since written
			} else if err != nil {
				return err
			}
			ret := time.Duration(retention) * time.Second
			rows := map[addr]*rowCounts{}
			for k, n := range cells {
				c, ok, err := parseCell(k)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				expand(f.partner, c, func(a addr, group string) {
					r := rows[a]
					if r == nil {
						r = &rowCounts{}
						rows[a] = r
					}
					r.add(f.grp, group, n, ret, true)
				})
			}
			ts := f.batch.Time().UnixMicro()
			rs := rowSet{}
			for a, r := range rows {
				ttl := ttlUntil(a.slot.Add(a.res.Duration()+r.retention), now)
				if ttl == 0 {
					continue
				}
				rs.add(a.part().String(), healStmt, ts, ttl, f.grp, r.claims[f.grp], r.groups,
					a.a, a.key, int8(a.res), a.period, a.slot, f.batch)
			}
			return st.execRows(ctx, rs)
		})
	}
	return fanOut(ctx, st.cfg.WriteConcurrency, fns)
}

// Counts sums every row of each slot: folded totals and batch rows. A
// slot's rows are summed from one consistent read: a fold between two
// pages of a partition (its total on one page, the rows it deleted on the
// next) would undercount, so a slot that straddles pages is read again on
// its own.
func (st *Store) Counts(ctx context.Context, q storage.CountsQuery) ([]storage.Slot, error) {
	from := q.Res.Slot(q.From)
	withGroups := q.Groups || q.Group != ""
	cols := "slot, n, claims"
	if withGroups {
		cols += ", groups, claim_groups, complete"
	}
	stmt := "SELECT " + cols + " FROM rollups WHERE rollup = ? AND key = ? AND res = ? AND period = ? AND slot >= ? AND slot < ?"
	one := "SELECT " + cols + " FROM rollups WHERE rollup = ? AND key = ? AND res = ? AND period = ? AND slot = ?"
	var mu sync.Mutex
	out := map[time.Time]*storage.Slot{}
	ps := periods(q.Res, from, q.To)
	fns := make([]func(context.Context) error, len(ps))
	for i, p := range ps {
		fns[i] = func(ctx context.Context) error {
			local := map[time.Time]*storage.Slot{}
			straddling, err := st.sumRows(st.s.Query(stmt, int8(q.Rollup), q.Key, int8(q.Res), p, from, q.To).WithContext(ctx).PageSize(st.countsPage), withGroups, local)
			if err != nil {
				return err
			}
			for slot := range straddling {
				delete(local, slot)
				if _, err := st.sumRows(st.s.Query(one, int8(q.Rollup), q.Key, int8(q.Res), p, slot).WithContext(ctx).PageSize(100_000), withGroups, local); err != nil {
					return err
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, s := range local {
				out[k] = s // a slot lies in one partition
			}
			return nil
		}
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return nil, fmt.Errorf("cassandrastore: counts: %w", err)
	}
	slots := make([]storage.Slot, 0, len(out))
	for _, s := range out {
		if q.Group != "" {
			s.Total = s.Groups[q.Group]
			s.Groups = nil
		} else if !q.Groups {
			s.Groups = nil
		}
		if s.Total > 0 {
			for g, v := range s.Groups {
				if v == 0 {
					delete(s.Groups, g)
				}
			}
			slots = append(slots, *s)
		}
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].Start.Before(slots[j].Start) })
	return slots, nil
}

// sumRows adds the rows q reads to their slots, and returns the slots
// whose rows may run over a page boundary.
func (st *Store) sumRows(q *gocql.Query, withGroups bool, into map[time.Time]*storage.Slot) (map[time.Time]bool, error) {
	iter := q.Iter()
	var (
		slot   time.Time
		n      int64
		claims map[int]int64
		groups map[string]int64
		cg     map[string]int64
		whole  bool
		last   time.Time
		rows   int
	)
	straddling := map[time.Time]bool{}
	dest := []any{&slot, &n, &claims}
	if withGroups {
		dest = append(dest, &groups, &cg, &whole)
	}
	for {
		if rows > 0 && iter.WillSwitchPage() {
			straddling[last] = true
			if st.pageTurn != nil {
				st.pageTurn()
			}
		}
		if !iter.Scan(dest...) {
			break
		}
		rows++
		last = slot
		s := into[slot]
		if s == nil {
			s = &storage.Slot{Start: slot.UTC()}
			if withGroups {
				s.Groups = map[string]int64{}
			}
			into[slot] = s
		}
		s.Total += n
		for _, v := range claims {
			s.Total += v
		}
		// A folded total or a complete row counts by group in groups; a
		// healed row, per claim group in claim_groups (which a complete
		// row repeats, if it was healed too).
		for g, v := range groups {
			s.Groups[g] += v
		}
		if !whole && len(groups) == 0 {
			for k, v := range cg {
				s.Groups[groupOf(k)] += v
			}
		}
		n, claims, groups, cg, whole = 0, nil, nil, nil, false
	}
	return straddling, iter.Close()
}

// Users merges the sketches of each slot.
func (st *Store) Users(ctx context.Context, q storage.UsersQuery, fn func(time.Time, []byte) error) error {
	from := q.Res.Slot(q.From)
	var mu sync.Mutex
	out := map[time.Time]*hll.Sketch{}
	ps := periods(q.Res, from, q.To)
	fns := make([]func(context.Context) error, len(ps))
	for i, p := range ps {
		fns[i] = func(ctx context.Context) error {
			iter := st.s.Query("SELECT slot, sketch FROM user_sketches WHERE scope = ? AND key = ? AND res = ? AND period = ? AND slot >= ? AND slot < ?",
				int8(q.Scope), q.Key, int8(q.Res), p, from, q.To).WithContext(ctx).PageSize(1000).Iter()
			local := map[time.Time]*hll.Sketch{}
			var slot time.Time
			var b []byte
			for iter.Scan(&slot, &b) {
				s := local[slot]
				if s == nil {
					s = &hll.Sketch{}
					local[slot] = s
				}
				if err := s.MergeBinary(b); err != nil {
					iter.Close()
					return fmt.Errorf("user sketch of %v: %w", slot, err)
				}
			}
			if err := iter.Close(); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for k, s := range local {
				out[k] = s
			}
			return nil
		}
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return fmt.Errorf("cassandrastore: users: %w", err)
	}
	starts := make([]time.Time, 0, len(out))
	for t, s := range out {
		if !s.Empty() {
			starts = append(starts, t)
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	var buf []byte
	for _, t := range starts {
		buf = out[t].Append(buf[:0])
		if err := fn(t.UTC(), buf); err != nil {
			return err
		}
	}
	return nil
}
