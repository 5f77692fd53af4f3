package cassandrastore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// copyCountsVersion is the schema_migrations version of copyCounts, a
// migration in Go run after the CQL files.
const copyCountsVersion = 8

// copyCounts copies the quarter-hour counts of counts_by_sub_system and
// counts_by_partner (migration 0005) into rollups (0007), so reports keep
// counting events stored before this version. Those counts have no minute
// detail: they land on each quarter's first minute. Stored events keep no
// users, so unique users start with this version.
//
// Each old partition (a sub-system's or partner's day) becomes one batch
// row per new slot, with a batch id derived from the old partition and a
// write timestamp at the old day's start: copying again rewrites the same
// rows, and a row already folded stays folded (I4). Run it with the old
// writers stopped; the old tables are left for a later version to drop.
func copyCounts(ctx context.Context, s *gocql.Session, keyspace string) error {
	for _, old := range []struct {
		table, key, group string
		rollups           []storage.Rollup
	}{
		{"counts_by_sub_system", "sub_system_id", "event_type", []storage.Rollup{storage.SubSystemTypes, storage.PartnerTypes}},
		{"counts_by_partner", "partner_id", "sub_system_id", []storage.Rollup{storage.PartnerSubSystems}},
	} {
		iter := s.Query(fmt.Sprintf("SELECT DISTINCT %s, day FROM %s.%s", old.key, keyspace, old.table)).WithContext(ctx).PageSize(1000).Iter()
		var key string
		var day int
		type part struct {
			key string
			day int
		}
		var parts []part
		for iter.Scan(&key, &day) {
			parts = append(parts, part{key, day})
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("cassandrastore: copy counts: list %s: %w", old.table, err)
		}
		for _, p := range parts {
			if err := copyPartition(ctx, s, keyspace, old.table, old.key, old.group, p.key, p.day, old.rollups); err != nil {
				return fmt.Errorf("cassandrastore: copy counts of %s %s/%d: %w", old.table, p.key, p.day, err)
			}
		}
	}
	return nil
}

func copyPartition(ctx context.Context, s *gocql.Session, keyspace, table, keyCol, groupCol, key string, day int, rollups []storage.Rollup) error {
	partner := key
	if table == "counts_by_sub_system" {
		if err := s.Query("SELECT partner_id FROM "+keyspace+".sub_system_ids WHERE id = ?", key).WithContext(ctx).Scan(&partner); err != nil {
			return fmt.Errorf("the sub-system's partner: %w", err)
		}
	}
	iter := s.Query(fmt.Sprintf("SELECT quarter, %s, n, groups, TTL(n), TTL(complete) FROM %s.%s WHERE %s = ? AND day = ?", groupCol, keyspace, table, keyCol),
		key, day).WithContext(ctx).PageSize(5000).Iter()
	rows := map[addr]*rowCounts{}
	var (
		q                time.Time
		group            string
		n                *int64
		groups           map[int]int64
		ttlTotal, ttlRow *int
	)
	for iter.Scan(&q, &group, &n, &groups, &ttlTotal, &ttlRow) {
		var count int64
		if n != nil {
			count += *n
		}
		for _, v := range groups {
			count += v
		}
		ttl := 0
		for _, t := range []*int{ttlTotal, ttlRow} {
			if t != nil {
				ttl = max(ttl, *t)
			}
		}
		if count > 0 && ttl > 0 {
			c := mcell{Minute: q.UTC().Unix()}
			for _, r := range rollups {
				c.Sub, c.Type = key, group
				if r == storage.PartnerTypes {
					c.Sub = partner
				}
				forRollup(r, partner, c, func(a addr, grp string) {
					rc := rows[a]
					if rc == nil {
						rc = &rowCounts{}
						rows[a] = rc
					}
					rc.add(0, grp, count, time.Duration(ttl)*time.Second)
				})
			}
		}
		n, groups, ttlTotal, ttlRow = nil, nil, nil, nil
	}
	if err := iter.Close(); err != nil {
		return err
	}
	y, m, d := day/10000, time.Month(day/100%100), day%100
	ts := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).UnixMicro()
	for a, r := range rows {
		batch := copiedBatch(table, key, day, a)
		if err := s.Query("INSERT INTO "+keyspace+".rollups (rollup, key, res, period, slot, batch_id, claims, groups, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
			a.a, a.key, int8(a.res), a.period, a.slot, batch, r.claims, r.groups, true, ts, int(r.retention.Seconds())).WithContext(ctx).Exec(); err != nil {
			return err
		}
	}
	return nil
}

// forRollup calls fn for each row, at every resolution, that a cell counts
// in for one rollup. c.Sub holds the rollup's key, c.Type its group.
func forRollup(r storage.Rollup, partner string, c mcell, fn func(a addr, group string)) {
	t := time.Unix(c.Minute, 0).UTC()
	for _, res := range storage.Resolutions {
		slot := res.Slot(t)
		fn(addr{kindCounts, int8(r), c.Sub, res, periodOf(res, false, slot), slot}, c.Type)
	}
}

// copiedBatch is the batch id of a copied row: a time uuid at the old
// day's start whose other bytes come from the old partition and the new
// row, so copying again writes the same row.
func copiedBatch(table, key string, day int, a addr) gocql.UUID {
	y, m, d := day/10000, time.Month(day/100%100), day%100
	u := gocql.MinTimeUUID(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d\x00%s\x00%d\x00%d", table, key, day, a.a, a.key, a.res, a.slot.Unix()))
	copy(u[8:], h[:8])
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u
}

// rowCounts is a batch row of rollups (0007): its total per claim group and
// its counts by group.
type rowCounts struct {
	claims    map[int]int64
	groups    map[string]int64
	retention time.Duration
}

func (r *rowCounts) add(grp int, group string, n int64, retention time.Duration) {
	if r.claims == nil {
		r.claims, r.groups = map[int]int64{}, map[string]int64{}
	}
	r.claims[grp] += n
	r.groups[group] += n
	r.retention = max(r.retention, retention)
}

// copyTotalsVersion is the schema_migrations version of copyTotals.
const copyTotalsVersion = 10

// copiedKey in a totals row's through marks the old layout's sums as added
// to it ("-" names no claim partition).
const copiedKey = "-"

// mergeCopied adds a slot's old sums to its totals row, once: under the
// row's own condition (IF through = old), as a fold does, so a fold that
// ran first keeps what it added and a copy run again adds nothing.
func mergeCopied(ctx context.Context, s *gocql.Session, keyspace string, p part, slot time.Time, n int64, groups map[string]int64, sk *hll.Sketch, ttl int) error {
	for range casTries {
		var through, gb, sb []byte
		var cur int64
		var curTTL *int
		err := s.Query("SELECT n, groups, sketch, through, TTL(through) FROM "+keyspace+".totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
			p.kind, p.a, p.key, int8(p.res), p.period, slot).Consistency(gocql.Serial).WithContext(ctx).Scan(&cur, &gb, &sb, &through, &curTTL)
		if err != nil && err != gocql.ErrNotFound {
			return err
		}
		tm, err := decodeMap(through)
		if err != nil {
			return err
		}
		if _, done := tm[copiedKey]; done {
			return nil
		}
		tm[copiedKey] = 0
		delete(tm, retKey) // what is copied in has no retention known: nor has the row now
		var old any
		if through != nil {
			old = through
		}
		if curTTL != nil {
			ttl = max(ttl, *curTTL)
		}
		var q *gocql.Query
		if p.kind == kindUsers {
			var merged hll.Sketch
			if len(sb) > 0 {
				if err := merged.MergeBinary(sb); err != nil {
					return err
				}
			}
			if err := merged.MergeBinary(sk.Append(nil)); err != nil {
				return err
			}
			q = s.Query("UPDATE "+keyspace+".totals USING TTL ? SET sketch = ?, n = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
				ttl, merged.Append(nil), int64(merged.Estimate()), encodeThrough(p.kind, tm), p.kind, p.a, p.key, int8(p.res), p.period, slot, old)
		} else {
			gm, err := decodeMap(gb)
			if err != nil {
				return err
			}
			for g, v := range groups {
				storage.AddGroup(gm, g, v)
			}
			q = s.Query("UPDATE "+keyspace+".totals USING TTL ? SET n = ?, groups = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
				ttl, cur+n, encodeCounts(gm), encodeCounts(tm), p.kind, p.a, p.key, int8(p.res), p.period, slot, old)
		}
		applied, err := q.SerialConsistency(gocql.Serial).WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil && !retryableCAS(err) {
			return err
		}
		if applied {
			return nil
		}
	}
	return fmt.Errorf("cassandrastore: copy into %v of %v: contended", slot, p)
}

// copyTotals adds the sums of rollups and user_sketches (0007) into totals
// (0009), once per slot (mergeCopied), so reports keep counting what was
// stored before this version; copying again, or after folds, adds nothing
// twice. Run it with the old writers stopped: a batch of an old writer that
// stopped between its claims and all of its count rows is counted in the
// rollups it had written only. The old tables are left for a later version
// to drop.
func copyTotals(ctx context.Context, s *gocql.Session, keyspace string) error {
	type oldPart struct {
		a      int8
		key    string
		res    int8
		period int
	}
	for _, kind := range []int8{kindCounts, kindUsers} {
		table, col := "rollups", "rollup"
		if kind == kindUsers {
			table, col = "user_sketches", "scope"
		}
		iter := s.Query(fmt.Sprintf("SELECT DISTINCT %s, key, res, period FROM %s.%s", col, keyspace, table)).WithContext(ctx).PageSize(1000).Iter()
		var parts []oldPart
		var p oldPart
		for iter.Scan(&p.a, &p.key, &p.res, &p.period) {
			parts = append(parts, p)
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("cassandrastore: copy totals: list %s: %w", table, err)
		}
		for _, p := range parts {
			if err := copyTotalsPart(ctx, s, keyspace, kind, p.a, p.key, p.res, p.period); err != nil {
				return fmt.Errorf("cassandrastore: copy totals of %s %d/%s/%d/%d: %w", table, p.a, p.key, p.res, p.period, err)
			}
		}
	}
	return nil
}

func copyTotalsPart(ctx context.Context, s *gocql.Session, keyspace string, kind, a int8, key string, res int8, period int) error {
	type acc struct {
		n      int64
		groups map[string]int64
		sk     hll.Sketch
		ttl    int
	}
	rows := map[time.Time]*acc{}
	var stmt string
	if kind == kindCounts {
		stmt = "SELECT slot, n, claims, groups, claim_groups, complete, TTL(n), TTL(complete) FROM " + keyspace + ".rollups WHERE rollup = ? AND key = ? AND res = ? AND period = ?"
	} else {
		stmt = "SELECT slot, sketch, TTL(sketch) FROM " + keyspace + ".user_sketches WHERE scope = ? AND key = ? AND res = ? AND period = ?"
	}
	iter := s.Query(stmt, a, key, res, period).WithContext(ctx).PageSize(1000).Iter()
	for {
		var (
			slot       time.Time
			n          int64
			claims     map[int]int64
			groups, cg map[string]int64
			whole      bool
			ttl1, ttl2 *int
			sketch     []byte
			ok         bool
		)
		if kind == kindCounts {
			ok = iter.Scan(&slot, &n, &claims, &groups, &cg, &whole, &ttl1, &ttl2)
		} else {
			ok = iter.Scan(&slot, &sketch, &ttl1)
		}
		if !ok {
			break
		}
		r := rows[slot]
		if r == nil {
			r = &acc{groups: map[string]int64{}}
			rows[slot] = r
		}
		for _, t := range []*int{ttl1, ttl2} {
			if t != nil {
				r.ttl = max(r.ttl, *t)
			}
		}
		if kind == kindUsers {
			if err := r.sk.MergeBinary(sketch); err != nil {
				iter.Close()
				return err
			}
			continue
		}
		// As 0007's reads summed them: a folded total or a complete row
		// counts by group in groups; a healed row, per claim group in
		// claim_groups ('<group>/<claim group>').
		r.n += n
		for _, v := range claims {
			r.n += v
		}
		for g, v := range groups {
			r.groups[g] += v
		}
		if !whole && len(groups) == 0 {
			for k, v := range cg {
				if i := strings.LastIndex(k, "/"); i >= 0 {
					k = k[:i]
				}
				r.groups[k] += v
			}
		}
	}
	if err := iter.Close(); err != nil {
		return err
	}
	// A slot whose rows carry no TTL that can be read (healed rows only set
	// collection entries) lives as long as the partition's longest, or,
	// with none, the default retention.
	longest := 0
	for _, r := range rows {
		longest = max(longest, r.ttl)
	}
	for slot, r := range rows {
		if r.ttl == 0 {
			r.ttl = longest
		}
		if r.ttl == 0 {
			r.ttl = int((400*24*time.Hour + storage.Res(res).Duration() - time.Since(slot)).Seconds())
		}
		if r.ttl <= 0 || (kind == kindCounts && r.n == 0) || (kind == kindUsers && r.sk.Empty()) {
			continue
		}
		if err := mergeCopied(ctx, s, keyspace, part{kind, a, key, storage.Res(res), period}, slot, r.n, r.groups, &r.sk, r.ttl); err != nil {
			return err
		}
	}
	return nil
}
