package cassandrastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

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

// A ucell is a key of a manifest's users: the users of one scope key in
// one minute.
type ucell struct {
	Scope  storage.UserScope
	Key    string
	Minute int64 // unix seconds
}

func (c ucell) String() string {
	b, _ := json.Marshal([]any{int(c.Scope), c.Key, c.Minute})
	return string(b)
}

func parseUcell(s string) (c ucell, err error) {
	var a []any
	if err := json.Unmarshal([]byte(s), &a); err != nil || len(a) != 3 {
		return c, fmt.Errorf("cassandrastore: bad manifest users key %q", s)
	}
	sc, ok1 := a[0].(float64)
	c.Key, _ = a[1].(string)
	m, ok2 := a[2].(float64)
	if !ok1 || !ok2 {
		return c, fmt.Errorf("cassandrastore: bad manifest users key %q", s)
	}
	c.Scope, c.Minute = storage.UserScope(sc), int64(m)
	return c, nil
}

// Kinds of totals.
const (
	kindCounts = 0 // a = rollup
	kindUsers  = 1 // a = scope
)

// addr is a row of totals; part is its partition.
type addr struct {
	kind   int8
	a      int8
	key    string
	res    storage.Res
	period int
	slot   time.Time
}

type part struct {
	kind   int8
	a      int8
	key    string
	res    storage.Res
	period int
}

func (a addr) part() part { return part{a.kind, a.a, a.key, a.res, a.period} }

// typed tells whether p is the users of one event type, whose rows are in
// typed_users under their sub-system or partner and type, in one partition
// with the key's other types (a fold writes them in the same batches).
func (p part) typed() bool { return typedPart(p.kind, p.a) }

// rows are the table of p's rows and the condition naming them but for
// their slot, with its values.
func (p part) rows() (table, where string, args []any) { return p.rowsIn(nil, nil) }

// rowsIn is rows, of the partitions of periods and of as (rollups of
// counts: totals only) when given: a statement of the slots of several
// (period IN, a IN).
func (p part) rowsIn(periods []int, as []int8) (table, where string, args []any) {
	per, pa := "period = ?", "a = ?"
	var perV, aV any = p.period, p.a
	if periods != nil {
		per, perV = "period IN ?", periods
	}
	if as != nil {
		pa, aV = "a IN ?", as
	}
	if p.typed() {
		id, typ, _ := storage.SplitTypedKey(p.key) // checked by kept
		return "typed_users", pa + " AND key = ? AND res = ? AND " + per + " AND type = ?", []any{aV, id, int8(p.res), perV, typ}
	}
	return "totals", "kind = ? AND " + pa + " AND key = ? AND res = ? AND " + per, []any{p.kind, aV, p.key, int8(p.res), perV}
}

// partition is p's Cassandra partition: the typed parts of a key,
// resolution and period share one.
func (p part) partition() part {
	if p.typed() {
		id, _, _ := storage.SplitTypedKey(p.key)
		p.key = id
	}
	return p
}

// A partition holds the slots of one resolution within a span of time:
// a UTC day of minutes or quarters, a month of half hours, hours or six
// hours, a year of days or weeks. Half hours take a month (1,488 rows, as
// many as a day of minutes): a report in a zone offset by a half hour reads
// two a day, and a month of them in one partition is a few statements, not
// one a day.
//
// The users of each event type (typed) share a partition with the key's
// other types, so a fold writes them in one conditional batch; such a
// partition holds T rows a slot for T types, so it spans less: six hours of
// minutes, a day of quarters, half hours and hours, a week of six hours, a
// month of days, a year of weeks, at most 360 slots (96 but for minutes,
// whose rows are small). Spans of a day or less cost a report's read more
// statements and a fold's late events more batches; they bound the rows.
type span int8

const (
	spanSixHours span = iota
	spanDay
	spanWeek
	spanMonth
	spanYear
)

// spanOf is the span of a partition of res (typed: of the users of each
// event type).
func spanOf(res storage.Res, typed bool) span {
	switch res {
	case storage.Minute:
		if typed {
			return spanSixHours
		}
		return spanDay
	case storage.QuarterHour:
		return spanDay
	case storage.HalfHour, storage.Hour, storage.HalfPastHour:
		if typed {
			return spanDay
		}
		return spanMonth
	case storage.SixHours:
		if typed {
			return spanWeek
		}
		return spanMonth
	case storage.Day:
		if typed {
			return spanMonth
		}
	}
	return spanYear
}

// typedPart tells whether a row of kind and a is the users of one event
// type (typed_users).
func typedPart(kind, a int8) bool { return kind == kindUsers && storage.UserScope(a).IsTyped() }

// periodOf is the partition period of a slot: its span's start as
// yyyymmdd then the quarter of the day, 0 to 3 (six hours), yyyymmdd (a
// day, a week from its Monday), yyyymm or yyyy: each fits Cassandra's int
// for every instant an event may carry (to 2200). A typed resolution whose
// span changed has a period of another form than the one it had
// (typed-users-2 in layout.go).
func periodOf(res storage.Res, typed bool, t time.Time) int {
	start := periodStart(res, typed, t)
	y, m, d := start.Date()
	switch spanOf(res, typed) {
	case spanSixHours:
		return ((y*100+int(m))*100+d)*10 + start.Hour()/6
	case spanDay, spanWeek:
		return (y*100+int(m))*100 + d
	case spanMonth:
		return y*100 + int(m)
	}
	return y
}

// periodStart and nextPeriod walk partitions.
func periodStart(res storage.Res, typed bool, t time.Time) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	switch spanOf(res, typed) {
	case spanSixHours:
		return time.Date(y, m, d, t.Hour()/6*6, 0, 0, 0, time.UTC)
	case spanDay:
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case spanWeek: // a week slot's: from Monday (ISO 8601)
		return storage.Week.Slot(t)
	case spanMonth:
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
}

func nextPeriod(res storage.Res, typed bool, t time.Time) time.Time {
	t = periodStart(res, typed, t)
	switch spanOf(res, typed) {
	case spanSixHours:
		return t.Add(6 * time.Hour)
	case spanDay:
		return t.AddDate(0, 0, 1)
	case spanWeek:
		return t.AddDate(0, 0, 7)
	case spanMonth:
		return t.AddDate(0, 1, 0)
	}
	return t.AddDate(1, 0, 0)
}

// periods are the partitions holding slots in [from, to).
func periods(res storage.Res, typed bool, from, to time.Time) []int {
	var out []int
	for t := periodStart(res, typed, from); t.Before(to); t = nextPeriod(res, typed, t) {
		out = append(out, periodOf(res, typed, t))
	}
	return out
}

// expand calls fn for each counts row, and group, a cell of partner counts in.
func expand(partner string, c mcell, fn func(a addr, group string)) {
	t := time.Unix(c.Minute, 0).UTC()
	for _, res := range storage.Resolutions {
		slot := res.Slot(t)
		p := periodOf(res, false, slot)
		fn(addr{kindCounts, int8(storage.SubSystemTypes), c.Sub, res, p, slot}, c.Type)
		fn(addr{kindCounts, int8(storage.PartnerSubSystems), partner, res, p, slot}, c.Sub)
		fn(addr{kindCounts, int8(storage.PartnerTypes), partner, res, p, slot}, c.Type)
	}
}

// expandUsers calls fn for each sketch row a manifest's users key merges into.
func expandUsers(c ucell, fn func(a addr)) {
	t := time.Unix(c.Minute, 0).UTC()
	for _, res := range storage.Resolutions {
		slot := res.Slot(t)
		fn(addr{kindUsers, int8(c.Scope), c.Key, res, periodOf(res, c.Scope.IsTyped(), slot), slot})
	}
}

// A manifest is a claim group's counts and users, read back.
type manifest struct {
	partner string
	bucket  int16
	mt      int64
	idh     uint64 // a hash of its id: manifests may share a time (mt)
	cells   map[string]int64
	users   map[string][]byte
	ret     time.Duration
}

// A total is a row of totals.
type total struct {
	n       int64
	groups  []byte // encodeCounts
	sketch  []byte
	through []byte // encodeCounts: claim partition -> manifest time
	ttl     int
	// A users row's n is the Estimate of its sketch, written with it by
	// this release, whose mark on through keeps any release before from
	// rewriting the sketch after (usersMark). est: the row has one (rows
	// folded before this release have none, and are read as sketches).
	est bool
}

// throughKey is a manifest's claim partition in a row's through: its bucket
// in a partner's rows, partner and bucket in a sub-system's (whose events
// may name more than one partner).
func throughKey(p part, m *manifest) string {
	b := strconv.Itoa(int(m.bucket))
	if p.kind == kindCounts && storage.Rollup(p.a) == storage.SubSystemTypes || p.kind == kindUsers && storage.UserScope(p.a).Untyped() == storage.SubSystemUsers {
		return m.partner + "/" + b
	}
	return b
}

// covers tells whether the row of partition p already holds manifest m.
func (t *total) covers(p part, m *manifest) bool {
	if t == nil {
		return false
	}
	at, err := countOf(t.through, throughKey(p, m))
	return err == nil && m.mt <= at // a row that cannot say holds nothing
}

// partnersOf are the partners whose claim partitions hold a key's manifests.
func (st *Store) partnersOf(ctx context.Context, kind, a int8, key string) ([]string, error) {
	if kind == kindUsers && storage.UserScope(a).IsTyped() {
		// The users of one type of a sub-system or partner: its manifests.
		key, _, _ = storage.SplitTypedKey(key)
		a = int8(storage.UserScope(a).Untyped())
	}
	if !(kind == kindCounts && storage.Rollup(a) == storage.SubSystemTypes || kind == kindUsers && storage.UserScope(a) == storage.SubSystemUsers) {
		return []string{key}, nil
	}
	if v, ok := st.partnersRead.Load(key); ok {
		r := v.(*partnersRead)
		usable := time.Since(r.at) < recentTTL && !r.at.Before(storage.ReadAfter(ctx))
		if w, ok := st.partnersWrote.Load(key); ok && r.at.Before(w.(time.Time)) {
			usable = false // begun before this store noted a partner: it may lack it
		}
		if usable {
			return r.partners, nil
		}
	}
	at := time.Now() // before the query: a read is as new as its start
	iter := st.s.Query("SELECT partner_id FROM sub_system_partners WHERE sub_system_id = ?", key).WithContext(ctx).Iter()
	var out []string
	var p string
	for iter.Scan(&p) {
		out = append(out, p)
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	if st.partnersHook != nil {
		st.partnersHook(key)
	}
	st.partnersRead.Store(key, &partnersRead{at: at, partners: out})
	return out, nil
}

// partnersRead is a read of a sub-system's partners, which serves the reads
// of the next recentTTL as a partner's manifests do (recentManifests): a
// partner report reads each of its sub-systems' counts, and each needs them.
// It serves no read asking for writes after it began (storage.ReadAfter),
// nor any read once this store has noted a partner of the sub-system after
// it began (partnersWrote), however late it finished.
type partnersRead struct {
	at       time.Time
	partners []string
}

// notePartners records the partner of every sub-system of events, once per
// process, before their claims: a reader must find the manifests of any
// sub-system it is asked about.
func (st *Store) notePartners(ctx context.Context, events []event.Event) error {
	var fns []func(context.Context) error
	seen := map[[2]string]bool{}
	for i := range events {
		k := [2]string{events[i].SubSystemID, events[i].PartnerID}
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := st.subPartners.Load(k); ok {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			if err := st.s.Query("INSERT INTO sub_system_partners (sub_system_id, partner_id) VALUES (?, ?)", k[0], k[1]).WithContext(ctx).Exec(); err != nil {
				return err
			}
			st.subPartners.Store(k, true)
			st.partnersWrote.Store(k[0], time.Now()) // a read of this store sees its own writes
			return nil
		})
	}
	return fanOut(ctx, st.cfg.WriteConcurrency, fns)
}

// floorTTL is how long a floor of applied serves before it is read again:
// reading manifests from an old floor walks the deleted ones above it.
const floorTTL = 10 * time.Second

type floorRead struct {
	v  [ClaimBuckets]int64
	at time.Time
}

// appliedFloor is a lower bound of each claim partition's applied, read
// before the caller reads rows: every manifest at or below it is in the
// totals, or long gone.
func (st *Store) appliedFloor(ctx context.Context, partner string) ([ClaimBuckets]int64, error) {
	if v, ok := st.applied.Load(partner); ok && time.Since(v.(*floorRead).at) < floorTTL {
		return v.(*floorRead).v, nil
	}
	a, _, err := st.readApplied(ctx, partner, false)
	return a, err
}

// raiseApplied raises the floor to values seen; complete when every claim
// partition's was (which makes the floor fresh).
func (st *Store) raiseApplied(partner string, seen [ClaimBuckets]int64, complete bool) {
	for {
		old, _ := st.applied.Load(partner)
		next := &floorRead{v: seen}
		if complete {
			next.at = time.Now()
		}
		if old != nil {
			for b, v := range old.(*floorRead).v {
				next.v[b] = max(next.v[b], v)
			}
			if !complete {
				next.at = old.(*floorRead).at
			}
			if st.applied.CompareAndSwap(partner, old, next) {
				return
			}
		} else if _, loaded := st.applied.LoadOrStore(partner, next); !loaded {
			return
		}
	}
}

// readApplied reads each claim partition's applied (and sealed).
func (st *Store) readApplied(ctx context.Context, partner string, serial bool) (applied, sealed [ClaimBuckets]int64, err error) {
	fns := make([]func(context.Context) error, ClaimBuckets)
	for b := range ClaimBuckets {
		fns[b] = func(ctx context.Context) error {
			// The meta row: a point read, whatever expired claims lie before it.
			q := st.s.Query("SELECT applied, sealed FROM claims WHERE partner_id = ? AND bucket = ? AND id = ''", partner, int16(b)).WithContext(ctx)
			if serial {
				q = q.Consistency(gocql.Serial)
			}
			var a, s *int64
			if err := q.Scan(&a, &s); err != nil && err != gocql.ErrNotFound {
				return err
			}
			if a != nil {
				applied[b] = *a
			}
			if s != nil {
				sealed[b] = *s
			}
			return nil
		}
	}
	err = fanOut(ctx, ClaimBuckets, fns)
	if err == nil {
		st.raiseApplied(partner, applied, true)
	}
	return applied, sealed, err
}

// manifestUsersPage is the manifests a page holds with their users. A
// manifest's users are about 11 KiB at the workers' batches (a sketch for
// each user scope, key and minute of its events); a node builds a page
// whole in its heap, 32 partitions at once, and at SERIAL as one Paxos
// read: pages of 1,000 took hundreds of MiB, and ran a 1 GiB node out of
// heap. A report's reads, not serial, take four times as many a page.
const manifestUsersPage = 32

// readManifests reads the manifests of a partner's claim partitions above
// from (per bucket) and, when to is given, at or below it (a bucket with
// nothing between is not read), with their users if users.
func (st *Store) readManifests(ctx context.Context, partner string, from [ClaimBuckets]int64, to *[ClaimBuckets]int64, users, serial bool) ([]manifest, error) {
	var out []manifest
	page := 1000
	switch {
	case users && serial:
		page = manifestUsersPage // a fold's round: one page a partition
	case users:
		page = 4 * manifestUsersPage // a report behind a backlog: fewer round trips
	}
	err := st.eachManifest(ctx, partner, from, to, users, serial, page, ClaimBuckets, func(m *manifest) error {
		out = append(out, *m)
		return nil
	})
	return out, err
}

// eachManifest calls fn, one call at a time, with each manifest
// readManifests would read, reading at most par claim partitions at once
// in pages of page manifests. fn's error ends the read.
func (st *Store) eachManifest(ctx context.Context, partner string, from [ClaimBuckets]int64, to *[ClaimBuckets]int64, users, serial bool, page, par int, fn func(*manifest) error) error {
	var mu sync.Mutex
	fns := make([]func(context.Context) error, 0, ClaimBuckets)
	for b := range ClaimBuckets {
		hi := manifestsEnd
		if to != nil {
			if to[b] <= from[b] {
				continue
			}
			hi = manifestBound(to[b])
		}
		fns = append(fns, func(ctx context.Context) error {
			cols := "id, cells, retention"
			if users {
				cols += ", users"
			}
			q := st.s.Query("SELECT "+cols+" FROM claims WHERE partner_id = ? AND bucket = ? AND id > ? AND id <= ?",
				partner, int16(b), manifestBound(from[b]), hi).WithContext(ctx).PageSize(page)
			if serial {
				q = q.Consistency(gocql.Serial)
			}
			iter := q.Iter()
			for {
				var (
					id  string
					m   = manifest{partner: partner, bucket: int16(b)}
					ret int
				)
				dest := []any{&id, &m.cells, &ret}
				if users {
					dest = append(dest, &m.users)
				}
				if !iter.Scan(dest...) {
					break
				}
				mt, ok := manifestTime(id)
				if !ok {
					continue
				}
				m.mt, m.ret, m.idh = mt, time.Duration(ret)*time.Second, idHash(id)
				mu.Lock()
				err := fn(&m)
				mu.Unlock()
				if err != nil {
					_ = iter.Close()
					return err
				}
			}
			return iter.Close()
		})
	}
	return fanOut(ctx, par, fns)
}

// How readTotals reads: for a report (without through: see Counts and
// Users), for a report's slots that manifests add to (with through), for a
// fold (with TTLs), or for a fold at SERIAL.
type readMode int

const (
	forReport readMode = iota
	forReportThrough
	forFold
	forFoldSerial
	forEstimates // users rows' n (the sketch's estimate), without the sketch
	forThroughs  // users rows' through and TTL alone (unions.go)
)

// sketches tells whether a read of rows of kind reads their sketches.
func sketches(kind int8, mode readMode) bool {
	return kind == kindUsers && mode != forEstimates && mode != forThroughs
}

// usersPage is the sketch rows a page holds (up to 16 KiB each: 1 MiB).
const usersPage = 64

// maxExact is the most slots a read of counts reads again one by one for
// their through; past it, the whole range is read with through.
var maxExact = 64

// readTotals reads the rows of a totals partition in [from, to), or those
// of slots when given, into out.
func (st *Store) readTotals(ctx context.Context, p part, from, to time.Time, slots []time.Time, withGroups bool, mode readMode, out map[time.Time]*total) error {
	return st.readRows(ctx, p, nil, nil, from, to, slots, withGroups, mode, func(_ int8, slot time.Time, t *total) { out[slot] = t })
}

// readRows is readTotals, passing each row to out with its rollup: of
// slots in the partitions of periods when given (a slot is in one, so
// period IN names each row once), of the rollups as when given.
func (st *Store) readRows(ctx context.Context, p part, periods []int, as []int8, from, to time.Time, slots []time.Time, withGroups bool, mode readMode, out func(a int8, slot time.Time, t *total)) error {
	// A report reads rows without through (a claim partition of each of a
	// sub-system's partners' 32: as many bytes as a sparse sketch) unless
	// it asks for them: merging a manifest a sketch already holds changes
	// nothing (Users), and a count needs through only where a manifest
	// above the floor adds to it (Counts).
	through := mode != forReport && mode != forEstimates
	cols := "a, slot, n"
	switch {
	case mode == forThroughs:
		cols = "a, slot"
	case sketches(p.kind, mode):
		cols = "a, slot, sketch"
	}
	if through {
		cols += ", through"
	}
	if withGroups && p.kind == kindCounts {
		cols += ", groups"
	}
	if mode == forFold || mode == forFoldSerial || mode == forThroughs {
		cols += ", TTL(through)"
	}
	// Counts: a partition holds at most 1,488 slots, so one page, one
	// consistent read. Sketches (up to 16 KiB each) come in small pages, so
	// a read never holds megabytes in a node's heap at once; they need no
	// one read: merging a manifest a row already holds changes nothing, and
	// a manifest is kept 10 minutes after it was applied.
	page := 5000
	if sketches(p.kind, mode) {
		page = usersPage
	}
	var q *gocql.Query
	table, where, args := p.rowsIn(periods, as)
	if slots != nil {
		q = st.s.Query("SELECT "+cols+" FROM "+table+" WHERE "+where+" AND slot IN ?", append(args, slots)...)
	} else {
		q = st.s.Query("SELECT "+cols+" FROM "+table+" WHERE "+where+" AND slot >= ? AND slot < ?", append(args, from, to)...)
	}
	q = q.WithContext(ctx).PageSize(page)
	if mode == forFoldSerial {
		q = q.Consistency(gocql.Serial)
	}
	iter := q.Iter()
	for {
		var a int8
		var slot time.Time
		t := &total{}
		var ttl *int
		var n *int64
		dest := []any{&a, &slot}
		switch {
		case mode == forThroughs:
		case mode == forEstimates:
			dest = append(dest, &n)
		case p.kind == kindUsers:
			dest = append(dest, &t.sketch)
		default:
			dest = append(dest, &t.n)
		}
		if through {
			dest = append(dest, &t.through)
		}
		if withGroups && p.kind == kindCounts {
			dest = append(dest, &t.groups)
		}
		if mode == forFold || mode == forFoldSerial || mode == forThroughs {
			dest = append(dest, &ttl)
		}
		if !iter.Scan(dest...) {
			break
		}
		if ttl != nil {
			t.ttl = *ttl
		}
		if mode == forEstimates && n != nil {
			t.n, t.est = *n, true
		}
		out(a, slot.UTC(), t)
	}
	return iter.Close()
}

// Reading a range is exact whatever a folder does meanwhile (I4, I5): the
// totals and the manifests above a floor of applied read before both; a
// manifest counts in a slot unless the slot's row, as read, covers it
// (through). A manifest at or below the floor is in every row it counts
// in, and so in the rows as read.

// recentTTL is how long a read of a partner's manifests serves the reads
// after it: a report reads counts and users of many tiles, and a writer in
// another process is seen at most this late, or not at all by a read that
// asks for the writes before an instant after it (storage.WithReadAfter).
// Writes through this store drop the partner's read.
var recentTTL = time.Second // a var: a test makes it long

// recentBytes bounds a partner's manifests read once and shared
// (recentManifests). Behind a fold backlog they can be gigabytes (100,000
// manifests of 11 KiB); past this, each read streams them instead, a page
// at a time: slower, as each pass reads them again, but bounded.
// (Store.recentBytes: a test makes it small.)
const recentBytes = 32 << 20

// streamPage and streamPar bound a stream's manifests in memory: pages of
// streamPage, streamPar claim partitions at once.
const (
	streamPage = manifestUsersPage
	streamPar  = 4
)

type recentRead struct {
	floor [ClaimBuckets]int64
	at    time.Time
	done  chan struct{}
	ms    []manifest
	big   bool // more than recentBytes: stream them
	err   error
	// Under recentMu: the read has ended, and the bytes of ms it counts
	// in Store.recentHeld (0 once given back).
	finished bool
	size     int64
}

var errTooBig = errors.New("cassandrastore: manifests above recentBytes")

var mStreamed = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_storage_manifest_streams_total",
	Help: "Passes of a report's read over manifests not yet folded that streamed them, page by page, as they were too many to hold (a fold backlog)."})

// size is about what m holds in memory.
func (m *manifest) size() int {
	n := 96
	for k := range m.cells {
		n += len(k) + 24
	}
	for k, v := range m.users {
		n += len(k) + len(v) + 40
	}
	return n
}

// above is a partner's manifests above a floor as a report's read sees
// them: read once and shared by the reads of the next recentTTL, or, past
// recentBytes, streamed again by each pass (each).
type above struct {
	st      *Store
	partner string
	floor   [ClaimBuckets]int64
	ms      []manifest
	stream  bool
	// A stream's first pass: the last manifest time it read of each
	// partition, and each manifest's id hash (8 bytes a manifest). A later
	// pass counts those alone: Counts reads rows between two passes, and
	// a manifest it did not see then may be in them, even one with the
	// time of one it saw (a claim refused and retried takes sealed+1).
	to   *[ClaimBuckets]int64
	seen [ClaimBuckets][]uint64
}

// idHash is FNV-1a of a manifest's id.
func idHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// each calls fn with each manifest, with its users if users (a shared
// read always has them).
func (a *above) each(ctx context.Context, users bool, fn func(*manifest) error) error {
	if !a.stream {
		for i := range a.ms {
			if err := fn(&a.ms[i]); err != nil {
				return err
			}
		}
		return nil
	}
	mStreamed.Inc()
	if a.to != nil {
		return a.st.eachManifest(ctx, a.partner, a.floor, a.to, users, false, streamPage, streamPar, func(m *manifest) error {
			if _, ok := slices.BinarySearch(a.seen[m.bucket], m.idh); !ok {
				return nil
			}
			return fn(m)
		})
	}
	to := a.floor
	var seen [ClaimBuckets][]uint64
	err := a.st.eachManifest(ctx, a.partner, a.floor, nil, users, false, streamPage, streamPar, func(m *manifest) error {
		to[m.bucket] = max(to[m.bucket], m.mt)
		seen[m.bucket] = append(seen[m.bucket], m.idh)
		return fn(m)
	})
	if err != nil {
		return err
	}
	for b := range seen {
		slices.Sort(seen[b])
	}
	a.to, a.seen = &to, seen
	return nil
}

// recentManifests is the partner's manifests above floor, from a read of
// the last recentTTL whose floor is at most floor, or a new one. Any floor
// read before the rows is exact (I5); a lower one only reads more. Past
// recentBytes (or the store's 4 × recentBytes over all partners) the read
// gives up, and the partner's reads stream for streamFor.
func (st *Store) recentManifests(ctx context.Context, partner string, floor [ClaimBuckets]int64) (*above, error) {
	st.recentMu.Lock()
	if time.Now().Before(st.streamUntil[partner]) {
		st.recentMu.Unlock()
		return &above{st: st, partner: partner, floor: floor, stream: true}, nil
	}
	r := st.recent[partner]
	usable := r != nil && time.Since(r.at) < recentTTL && !r.at.Before(storage.ReadAfter(ctx))
	for b := range ClaimBuckets {
		if usable && r.floor[b] > floor[b] {
			usable = false
		}
	}
	if !usable {
		r = &recentRead{floor: floor, at: time.Now(), done: make(chan struct{})}
		if st.recent == nil {
			st.recent, st.streamUntil = map[string]*recentRead{}, map[string]time.Time{}
		}
		st.sweepRecentLocked()
		st.dropRecentLocked(partner)
		st.recent[partner] = r
		st.recentMu.Unlock()
		var ms []manifest
		size := int64(0)
		err := st.eachManifest(context.WithoutCancel(ctx), partner, floor, nil, true, false, 4*manifestUsersPage, ClaimBuckets, func(m *manifest) error {
			sz := int64(m.size())
			size += sz
			if held := st.recentHeld.Add(sz); size > int64(st.recentBytes) || held > 4*int64(st.recentBytes) {
				return errTooBig
			}
			ms = append(ms, *m)
			return nil
		})
		st.recentMu.Lock()
		switch {
		case errors.Is(err, errTooBig):
			r.big = true
			st.streamUntil[partner] = time.Now().Add(streamFor)
		case err != nil:
			r.err = err
		default:
			r.ms, r.size = ms, size
		}
		if r.size == 0 || st.recent[partner] != r { // held by no one
			st.recentHeld.Add(-size)
			r.size = 0
		}
		r.finished = true
		if r.err != nil && st.recent[partner] == r {
			delete(st.recent, partner)
		}
		st.recentMu.Unlock()
		close(r.done)
	} else {
		st.recentMu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return &above{st: st, partner: partner, floor: floor, ms: r.ms, stream: r.big}, nil
}

// streamFor is how long a partner's reads stream after a read of its
// manifests ran past recentBytes, rather than try again each recentTTL.
const streamFor = 30 * time.Second

// dropRecentLocked forgets the partner's read (recentMu held); a read still
// under way gives its bytes back itself when it ends.
func (st *Store) dropRecentLocked(partner string) {
	if r := st.recent[partner]; r != nil {
		if r.finished {
			st.recentHeld.Add(-r.size)
			r.size = 0
		}
		delete(st.recent, partner)
	}
}

// sweepRecentLocked forgets the reads no read may use any more, and lapsed
// streamUntil marks (recentMu held): a reporter writes nothing, so nothing
// else drops them.
func (st *Store) sweepRecentLocked() {
	for p, r := range st.recent {
		if r.finished && time.Since(r.at) >= recentTTL {
			st.dropRecentLocked(p)
		}
	}
	for p, t := range st.streamUntil {
		if time.Now().After(t) {
			delete(st.streamUntil, p)
		}
	}
}

func (st *Store) forgetRecent(partner string) {
	st.recentMu.Lock()
	st.dropRecentLocked(partner)
	st.recentMu.Unlock()
}

// Counts sums each slot's total and the manifests its row does not cover.
func (st *Store) Counts(ctx context.Context, q storage.CountsQuery) ([]storage.Slot, error) {
	out, err := st.countsOf(ctx, []storage.CountsQuery{q})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// CountsEach implements storage.CountsEacher: queries of one key's slots
// that differ in their rollup alone (a partner's by type and by
// sub-system) read their rows in one statement a resolution and partition.
func (st *Store) CountsEach(ctx context.Context, qs []storage.CountsQuery) ([][]storage.Slot, error) {
	if len(qs) > 0 && together(qs) {
		return st.countsOf(ctx, qs)
	}
	out := make([][]storage.Slot, len(qs))
	for i, q := range qs {
		var err error
		if out[i], err = st.Counts(ctx, q); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// together tells whether qs differ in their rollup alone, each its own,
// and read groups alike (which columns, and packs or rows). Only nil is
// the whole range; empty, no slot.
func together(qs []storage.CountsQuery) bool {
	for i, q := range qs {
		for _, o := range qs[:i] {
			if q.Rollup == o.Rollup || q.Key != o.Key || q.Res != o.Res || !q.From.Equal(o.From) || !q.To.Equal(o.To) ||
				(q.Only == nil) != (o.Only == nil) || !slices.Equal(q.Only, o.Only) || (q.Groups || q.Group != "") != (o.Groups || o.Group != "") {
				return false
			}
		}
	}
	return true
}

// countsOf answers qs, together (see together): the manifests once, the
// rows of all in one read.
func (st *Store) countsOf(ctx context.Context, qs []storage.CountsQuery) ([][]storage.Slot, error) {
	q0 := qs[0]
	out := make([][]storage.Slot, len(qs))
	if fine, cut, ok := st.derived(q0.Res, q0.From, q0.To); ok {
		for i, q := range qs {
			var err error
			if out[i], err = st.derivedCounts(ctx, q, fine, cut); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	from := q0.Res.Slot(q0.From)
	withGroups := q0.Groups || q0.Group != ""
	partners, err := st.partnersOf(ctx, kindCounts, int8(q0.Rollup), q0.Key)
	if err != nil {
		return nil, fmt.Errorf("cassandrastore: counts: %w", err)
	}
	for _, q := range qs[1:] {
		ps, err := st.partnersOf(ctx, kindCounts, int8(q.Rollup), q.Key)
		if err != nil {
			return nil, fmt.Errorf("cassandrastore: counts: %w", err)
		}
		if !slices.Equal(ps, partners) { // rollups of sub-systems and partners: apart
			for i, q := range qs {
				if out[i], err = st.Counts(ctx, q); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
	}
	floors := make([][ClaimBuckets]int64, len(partners))
	for i, p := range partners {
		if floors[i], err = st.appliedFloor(ctx, p); err != nil {
			return nil, fmt.Errorf("cassandrastore: counts: %w", err)
		}
	}
	// The manifests above the floors, before the rows: a row needs its
	// through only where one of them adds to it (I5 holds in this order
	// too: a manifest committed after this read and folded before the rows
	// is counted by its row, and one not folded yet is as if it came after;
	// for such a concurrent claim group that is per slot, so one read may
	// count part of it, never an event twice or one stored before it).
	mss := make([]*above, len(partners))
	as := make([]int8, len(qs))
	exact := make([]map[time.Time]bool, len(qs))
	for i, q := range qs {
		as[i], exact[i] = int8(q.Rollup), map[time.Time]bool{}
	}
	for pi, partner := range partners {
		if mss[pi], err = st.recentManifests(ctx, partner, floors[pi]); err != nil {
			return nil, fmt.Errorf("cassandrastore: counts: %w", err)
		}
		err := mss[pi].each(ctx, false, func(m *manifest) error {
			for k := range m.cells {
				c, ok, err := parseCell(k)
				if err != nil {
					return err
				}
				if ok {
					expand(partner, c, func(a addr, _ string) {
						if a.kind == kindCounts && a.key == q0.Key && a.res == q0.Res {
							if i := slices.Index(as, a.a); i >= 0 {
								exact[i][a.slot] = true
							}
						}
					})
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("cassandrastore: counts: %w", err)
		}
	}
	rows, err := st.rangeTotalsEach(ctx, as, q0.Key, q0.Res, from, q0.To, q0.Only, withGroups, exact)
	if err != nil {
		return nil, fmt.Errorf("cassandrastore: counts: %w", err)
	}
	for i, q := range qs {
		if out[i], err = st.sumCounts(ctx, q, from, withGroups, partners, mss, rows[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sumCounts is q's slots: its rows as read, and the manifests of mss
// (above the floors of partners) they do not cover.
func (st *Store) sumCounts(ctx context.Context, q storage.CountsQuery, from time.Time, withGroups bool, partners []string, mss []*above, rows map[time.Time]*total) ([]storage.Slot, error) {
	out := make(map[time.Time]*storage.Slot, len(rows))
	// The rows' slots in one allocation (720 of an hourly series); a
	// manifest's slot past them gets its own.
	backing := make([]storage.Slot, 0, len(rows))
	slotOf := func(t time.Time) *storage.Slot {
		s := out[t]
		if s == nil {
			if len(backing) < cap(backing) {
				backing = append(backing, storage.Slot{Start: t})
				s = &backing[len(backing)-1]
			} else {
				s = &storage.Slot{Start: t}
			}
			if withGroups { // a series of totals allocates no map a slot
				s.Groups = map[string]int64{}
			}
			out[t] = s
		}
		return s
	}
	for t, r := range rows {
		s := slotOf(t)
		s.Total += r.n
		if err := addCounts(s.Groups, r.groups, q.Group); err != nil {
			return nil, fmt.Errorf("cassandrastore: counts of %v: %w", t, err)
		}
		if q.Group != "" && q.AlsoOther && q.Group != storage.OtherGroup {
			if err := addCounts(s.Groups, r.groups, storage.OtherGroup); err != nil {
				return nil, fmt.Errorf("cassandrastore: counts of %v: %w", t, err)
			}
		}
	}
	// A manifest's group counts as its fold will count it: under
	// storage.OtherGroup where the row names no more (storage.AddGroup).
	// A row is full when it names storage.MaxGroups; then its names are
	// read once, for the slots manifests add to.
	names := map[time.Time]map[string]bool{}
	asFolded := func(t time.Time, group string) string {
		ns, ok := names[t]
		if !ok {
			if rows[t] != nil && namedGroups(rows[t].groups) >= storage.MaxGroups {
				ns = map[string]bool{}
				_ = decodeCountBytes(rows[t].groups, func(k []byte, _ int64) { ns[string(k)] = true })
			}
			names[t] = ns
		}
		if ns != nil && !ns[group] {
			return storage.OtherGroup
		}
		return group
	}
	for pi, partner := range partners {
		err := mss[pi].each(ctx, false, func(m *manifest) error {
			for k, n := range m.cells {
				c, ok, err := parseCell(k)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				expand(partner, c, func(a addr, group string) {
					if a.a != int8(q.Rollup) || a.key != q.Key || a.res != q.Res || a.slot.Before(from) || !a.slot.Before(q.To) || q.Only != nil && !q.Only.Has(q.Res, a.slot) || rows[a.slot].covers(a.part(), m) {
						return
					}
					s := slotOf(a.slot)
					s.Total += n
					switch {
					case s.Groups == nil:
					case q.Group == "":
						storage.AddGroup(s.Groups, group, n) // the row's groups, then the manifests'
					default: // one group (and maybe OtherGroup): each as its fold will count it
						if g := asFolded(a.slot, group); g == q.Group || q.AlsoOther && g == storage.OtherGroup {
							s.Groups[g] += n
						}
					}
				})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("cassandrastore: counts: %w", err)
		}
	}
	slots := make([]storage.Slot, 0, len(out))
	for _, s := range out {
		if q.Group != "" {
			s.Total = s.Groups[q.Group]
			if q.AlsoOther && q.Group != storage.OtherGroup {
				s.Total += s.Groups[storage.OtherGroup]
			}
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
	inOrder(slots, func(s *storage.Slot) time.Time { return s.Start }, q.Res.Duration())
	return slots, nil
}

// inPartitions is the most partitions a statement of named slots reads
// (period IN, a IN): a coordinator reads them one after another, where
// statements of their own run side by side.
const inPartitions = 4

// inList is the most slots a statement names (slot IN ...): a sketch read
// of a page's worth; a counts read a day of half hours and more.
func inList(kind int8, mode readMode) int {
	if sketches(kind, mode) {
		return usersPage
	}
	return 256
}

// rangeTotals reads the rows of [from, to), or of the slots only names in
// it, from each partition in parallel. Where only leaves out most of a
// partition's slots (the half hours at the ends of 30 Kolkata days), the
// rest are named (slot IN): a few statements for the month, not one a
// span; else the partition's range is read and filtered.
//
// The rows come without through, but for the slots in exact, which are read
// again whole after the range: a row's count and through from one read.
func (st *Store) rangeTotals(ctx context.Context, kind, a int8, key string, res storage.Res, from, to time.Time, only storage.Spans, withGroups, estimates bool, exact map[time.Time]bool) (map[time.Time]*total, error) {
	mode := forReport
	if estimates {
		mode = forEstimates
	}
	return st.rangeTotalsMode(ctx, kind, a, key, res, from, to, only, withGroups, mode, exact)
}

// rangeTotalsMode is rangeTotals, read in mode.
func (st *Store) rangeTotalsMode(ctx context.Context, kind, a int8, key string, res storage.Res, from, to time.Time, only storage.Spans, withGroups bool, mode readMode, exact map[time.Time]bool) (map[time.Time]*total, error) {
	if len(exact) > maxExact {
		// Folding lags (a lapsed lease): the range with through costs
		// less than a read of each slot.
		mode, exact = forReportThrough, nil
	}
	// Packs hold n: a counts row's total, or a users row's estimate.
	if (mode == forEstimates || mode == forReport && kind == kindCounts) && st.usesPacks(res, from, withGroups) {
		rows, err := st.packTotals(ctx, kind, a, key, res, from, to, only, mode == forEstimates)
		if err != nil {
			return nil, err
		}
		return st.exactRows(ctx, kind, a, key, res, from, to, only, withGroups, exact, rows)
	}
	rows, err := st.readRange(ctx, kind, []int8{a}, key, res, from, to, only, withGroups, mode)
	if err != nil {
		return nil, err
	}
	return st.exactRows(ctx, kind, a, key, res, from, to, only, withGroups, exact, rows[a])
}

// rangeTotalsEach is rangeTotals of rollups as of kind counts, for a
// report, each with its exact: the rows of all in one statement where
// rangeTotals reads one (a IN), a partner's by type and by sub-system.
func (st *Store) rangeTotalsEach(ctx context.Context, as []int8, key string, res storage.Res, from, to time.Time, only storage.Spans, withGroups bool, exact []map[time.Time]bool) ([]map[time.Time]*total, error) {
	out := make([]map[time.Time]*total, len(as))
	apart := len(as) == 1 || st.usesPacks(res, from, withGroups)
	for _, e := range exact {
		apart = apart || len(e) > maxExact
	}
	if apart {
		fns := make([]func(context.Context) error, len(as))
		for i, a := range as {
			fns[i] = func(ctx context.Context) (err error) {
				out[i], err = st.rangeTotals(ctx, kindCounts, a, key, res, from, to, only, withGroups, false, exact[i])
				return err
			}
		}
		return out, fanOut(ctx, len(fns), fns)
	}
	rows, err := st.readRange(ctx, kindCounts, as, key, res, from, to, only, withGroups, forReport)
	if err != nil {
		return nil, err
	}
	for i, a := range as {
		if rows[a] == nil {
			rows[a] = map[time.Time]*total{}
		}
		if out[i], err = st.exactRows(ctx, kindCounts, a, key, res, from, to, only, withGroups, exact[i], rows[a]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readRange reads the rows of [from, to) of each rollup of as, or of the
// slots only names in it, from each partition in parallel (rangeTotals).
func (st *Store) readRange(ctx context.Context, kind int8, as []int8, key string, res storage.Res, from, to time.Time, only storage.Spans, withGroups bool, mode readMode) (map[int8]map[time.Time]*total, error) {
	var mu sync.Mutex
	rows := make(map[int8]map[time.Time]*total, len(as))
	for _, a := range as {
		rows[a] = map[time.Time]*total{}
	}
	var in []int8 // a IN: more than one
	if len(as) > 1 {
		in = as
	}
	var fns []func(context.Context) error
	// read adds a read of partition p's rows in [from, to), or of slots
	// (of the partitions of periods, when given).
	read := func(p int, periods []int, from, to time.Time, slots []time.Time) {
		fns = append(fns, func(ctx context.Context) error {
			type row struct {
				a    int8
				slot time.Time
				t    *total
			}
			var local []row
			err := st.readRows(ctx, part{kind, as[0], key, res, p}, periods, in, from, to, slots, withGroups, mode, func(a int8, slot time.Time, t *total) {
				local = append(local, row{a, slot, t})
			})
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range local {
				if m := rows[r.a]; m != nil {
					m[r.slot] = r.t // a slot lies in one partition and one read
				}
			}
			return nil
		})
	}
	typed := typedPart(kind, as[0])
	var named []time.Time // slots read by name (slot IN), in order
	for t := periodStart(res, typed, from); t.Before(to); t = nextPeriod(res, typed, t) {
		p := periodOf(res, typed, t)
		// Sketches are read a page at a time (readTotals); an hour
		// partition holds a month, up to 8 KiB a row, so one read would walk
		// a dozen pages in turn. They need no one read (see readTotals):
		// a page's worth of slots each, read side by side.
		lo, hi := from, nextPeriod(res, typed, t)
		if t.After(lo) {
			lo = t
		}
		if to.Before(hi) {
			hi = to
		}
		if only != nil {
			var sel []time.Time
			for _, sp := range only.Within(res, lo, hi) {
				for s := sp.From; s.Before(sp.To); s = s.Add(res.Duration()) {
					sel = append(sel, s)
				}
			}
			if len(sel) == 0 {
				continue
			}
			if len(sel)*2 < int(hi.Sub(lo)/res.Duration()) {
				named = append(named, sel...)
				continue
			}
		}
		step := hi.Sub(lo)
		if sketches(kind, mode) {
			step = usersPage * res.Duration()
		}
		for c := lo; c.Before(hi); c = c.Add(step) {
			cFrom, cTo := c, c.Add(step)
			if hi.Before(cTo) {
				cTo = hi
			}
			read(p, nil, cFrom, cTo, nil)
		}
	}
	// The slots named, in statements of inList, of at most inPartitions
	// partitions (Cassandra reads those of one statement in turn): a
	// Kolkata month's ends, in two monthly partitions of half hours, one.
	for len(named) > 0 {
		var periods []int
		n := 0
		for ; n < len(named) && n < inList(kind, mode); n++ {
			p := periodOf(res, typed, named[n])
			if !slices.Contains(periods, p) {
				if len(periods) == max(1, inPartitions/len(as)) {
					break
				}
				periods = append(periods, p)
			}
		}
		chunk := named[:n:n]
		named = named[n:]
		if len(periods) == 1 {
			read(periods[0], nil, time.Time{}, time.Time{}, chunk)
		} else {
			read(periods[0], periods, time.Time{}, time.Time{}, chunk)
		}
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return nil, err
	}
	return rows, nil
}

// exactRows reads again whole, with through, the rows of the slots in
// exact (within [from, to) and only) into rows, and drops those outside
// only.
func (st *Store) exactRows(ctx context.Context, kind, a int8, key string, res storage.Res, from, to time.Time, only storage.Spans, withGroups bool, exact map[time.Time]bool, rows map[time.Time]*total) (map[time.Time]*total, error) {
	var mu sync.Mutex
	var fns []func(context.Context) error
	for t := range exact {
		if t.Before(from) || !t.Before(to) || only != nil && !only.Has(res, t) {
			continue
		}
		fns = append(fns, func(ctx context.Context) error {
			local := map[time.Time]*total{}
			if err := st.readTotals(ctx, part{kind, a, key, res, periodOf(res, typedPart(kind, a), t)}, t, t.Add(res.Duration()), nil, withGroups, forReportThrough, local); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if r := local[t]; r != nil {
				rows[t] = r
			} else {
				delete(rows, t) // rows are not deleted; but say only what this read saw
			}
			return nil
		})
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return nil, err
	}
	if only != nil {
		for t := range rows {
			if !only.Has(res, t) {
				delete(rows, t) // read with the range of its partition
			}
		}
	}
	return rows, nil
}

// usersFloors are the partners whose manifests may add to q's key, and the
// floor of applied manifests of each, read before the rows (I5).
func (st *Store) usersFloors(ctx context.Context, q storage.UsersQuery) ([]string, [][ClaimBuckets]int64, error) {
	partners, err := st.partnersOf(ctx, kindUsers, int8(q.Scope), q.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("cassandrastore: users: %w", err)
	}
	floors := make([][ClaimBuckets]int64, len(partners))
	for i, p := range partners {
		if floors[i], err = st.appliedFloor(ctx, p); err != nil {
			return nil, nil, fmt.Errorf("cassandrastore: users: %w", err)
		}
	}
	return partners, floors, nil
}

// KeepsUsers implements storage.ScopeKeeper: every scope, the users of
// each event type from typedSince on.
func (st *Store) KeepsUsers(sc storage.UserScope, from time.Time) bool {
	return !sc.IsTyped() || !from.Before(st.typedSince)
}

// kept refuses a read of the users of each event type from before this
// store kept them (errors.ErrUnsupported: a keyspace upgraded across
// typedSince has no rows of theirs before it), and a typed key that
// storage.TypedKey did not make.
func (st *Store) kept(sc storage.UserScope, key string, from time.Time) error {
	if !sc.IsTyped() {
		return nil
	}
	if _, _, ok := storage.SplitTypedKey(key); !ok {
		return fmt.Errorf("cassandrastore: %q is not a key of one event type's users (storage.TypedKey)", key)
	}
	if from.Before(st.typedSince) {
		return fmt.Errorf("cassandrastore: the users of each event type are kept from %s on, not from %s: %w",
			st.typedSince.Format(time.RFC3339), from.UTC().Format(time.RFC3339), errors.ErrUnsupported)
	}
	return nil
}

// UserEstimates reads each slot's estimate (n) instead of its sketch: a
// row's n is its sketch's Estimate, written with it (usersMark). A slot a
// manifest above the floor adds to, or whose row has no n (folded by a
// release before), is estimated from its sketch and manifests (Users); the
// rest hold every manifest at or below the floor (I5), so their n is
// exact. Reads summed from finer slots (derived) estimate the sums.
func (st *Store) UserEstimates(ctx context.Context, q storage.UsersQuery, fn func(time.Time, uint64) error) error {
	if err := st.kept(q.Scope, q.Key, q.Res.Slot(q.From)); err != nil {
		return err
	}
	if _, _, ok := st.derived(q.Res, q.From, q.To); ok {
		return storage.EstimateUsers(ctx, st.Users, q, fn)
	}
	from := q.Res.Slot(q.From)
	partners, floors, err := st.usersFloors(ctx, q)
	if err != nil {
		return err
	}
	rows, err := st.rangeTotals(ctx, kindUsers, int8(q.Scope), q.Key, q.Res, from, q.To, q.Only, false, true, nil)
	if err != nil {
		return fmt.Errorf("cassandrastore: users: %w", err)
	}
	redo := map[time.Time]bool{}
	for t, r := range rows {
		if !r.est {
			redo[t] = true
		}
	}
	for pi, partner := range partners {
		ms, err := st.recentManifests(ctx, partner, floors[pi])
		if err != nil {
			return fmt.Errorf("cassandrastore: users: %w", err)
		}
		err = ms.each(ctx, true, func(m *manifest) error {
			for k := range m.users {
				c, err := parseUcell(k)
				if err != nil {
					return err
				}
				if c.Scope != q.Scope || c.Key != q.Key {
					continue
				}
				expandUsers(c, func(a addr) {
					if a.res == q.Res && !a.slot.Before(from) && a.slot.Before(q.To) && (q.Only == nil || q.Only.Has(q.Res, a.slot)) {
						redo[a.slot] = true
					}
				})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cassandrastore: users: %w", err)
		}
	}
	est := make(map[time.Time]uint64, len(rows)+len(redo))
	for t, r := range rows {
		if !redo[t] && r.n > 0 {
			est[t] = uint64(r.n)
		}
	}
	if len(redo) > 0 {
		only := make(storage.Spans, 0, len(redo))
		for t := range redo {
			only = append(only, storage.Span{From: t, To: t.Add(q.Res.Duration())})
		}
		sort.Slice(only, func(i, j int) bool { return only[i].From.Before(only[j].From) })
		sq := q
		sq.From, sq.To, sq.Only = only[0].From, only[len(only)-1].To, only
		err := storage.EstimateUsers(ctx, st.Users, sq, func(t time.Time, n uint64) error {
			est[t] = n
			return nil
		})
		if err != nil {
			return fmt.Errorf("cassandrastore: users: %w", err)
		}
	}
	starts := make([]time.Time, 0, len(est))
	for t := range est {
		starts = append(starts, t)
	}
	inOrder(starts, func(t *time.Time) time.Time { return *t }, q.Res.Duration())
	for _, t := range starts {
		if err := fn(t.UTC(), est[t]); err != nil {
			return err
		}
	}
	return nil
}

// Users merges each slot's sketch and the users of manifests its row does
// not cover.
func (st *Store) Users(ctx context.Context, q storage.UsersQuery, fn func(time.Time, []byte) error) error {
	if err := st.kept(q.Scope, q.Key, q.Res.Slot(q.From)); err != nil {
		return err
	}
	if fine, cut, ok := st.derived(q.Res, q.From, q.To); ok {
		return st.derivedUsers(ctx, q, fine, cut, fn)
	}
	from := q.Res.Slot(q.From)
	partners, floors, err := st.usersFloors(ctx, q)
	if err != nil {
		return err
	}
	rows, err := st.rangeTotals(ctx, kindUsers, int8(q.Scope), q.Key, q.Res, from, q.To, q.Only, false, false, nil)
	if err != nil {
		return fmt.Errorf("cassandrastore: users: %w", err)
	}
	// A slot no manifest adds to is passed on as its row holds it (a dense
	// hour is 8 KiB: decoding and encoding it again cost more than its
	// read); one a manifest adds to is merged with its row.
	out := map[time.Time]*hll.Sketch{}
	merge := func(t time.Time, b []byte) error {
		s := out[t]
		if s == nil {
			s = &hll.Sketch{}
			out[t] = s
			if r := rows[t]; r != nil && len(r.sketch) > 0 {
				if err := s.MergeBinary(r.sketch); err != nil {
					return fmt.Errorf("cassandrastore: user sketch of %v: %w", t, err)
				}
			}
		}
		if err := s.MergeBinary(b); err != nil {
			return fmt.Errorf("cassandrastore: user sketch of %v: %w", t, err)
		}
		return nil
	}
	for pi, partner := range partners {
		ms, err := st.recentManifests(ctx, partner, floors[pi])
		if err != nil {
			return fmt.Errorf("cassandrastore: users: %w", err)
		}
		err = ms.each(ctx, true, func(m *manifest) error {
			for k, b := range m.users {
				c, err := parseUcell(k)
				if err != nil {
					return err
				}
				if c.Scope != q.Scope || c.Key != q.Key {
					continue
				}
				var ferr error
				expandUsers(c, func(a addr) {
					// Rows are read without through (readTotals): a
					// manifest the row holds merges again, changing nothing.
					if ferr != nil || a.res != q.Res || a.slot.Before(from) || !a.slot.Before(q.To) || q.Only != nil && !q.Only.Has(q.Res, a.slot) {
						return
					}
					ferr = merge(a.slot, b)
				})
				if ferr != nil {
					return ferr
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cassandrastore: users: %w", err)
		}
	}
	starts := make([]time.Time, 0, len(rows)+len(out))
	for t, r := range rows {
		if out[t] == nil && len(r.sketch) > 1 { // more than an empty sketch's tag
			if err := hll.Check(r.sketch); err != nil {
				return fmt.Errorf("cassandrastore: user sketch of %v: %w", t, err)
			}
			starts = append(starts, t)
		}
	}
	for t, s := range out {
		if !s.Empty() {
			starts = append(starts, t)
		}
	}
	inOrder(starts, func(t *time.Time) time.Time { return *t }, q.Res.Duration())
	var buf []byte
	for _, t := range starts {
		s := out[t]
		if s == nil {
			if err := fn(t.UTC(), rows[t].sketch); err != nil {
				return err
			}
			continue
		}
		buf = s.Append(buf[:0])
		if err := fn(t.UTC(), buf); err != nil {
			return err
		}
	}
	return nil
}
