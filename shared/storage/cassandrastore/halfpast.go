package cassandrastore

import (
	"context"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// DeriveHalfPastCounts writes a rollup key's hours from half past in
// [from, to) before since, each the sum of its two half hours (as a read
// of them sums them), with its pack entry, expiring keep after the slot
// ends; and returns how many it wrote. It is for a keyspace upgraded
// across them whose workers are stopped (a data set loaded before): a row
// is written only where none is (IF through = null), so one a fold wrote
// is left as it is, and running it again writes nothing. Then
// SetHalfPastSince may move their start back.
func (st *Store) DeriveHalfPastCounts(ctx context.Context, r storage.Rollup, key string, from, to time.Time, keep time.Duration) (int, error) {
	to = st.beforeHalfPast(to)
	if !from.Before(to) {
		return 0, nil
	}
	slots, err := st.Counts(ctx, storage.CountsQuery{Rollup: r, Key: key, Res: storage.HalfPastHour, From: from, To: to, Groups: true})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range slots {
		tb := encodeThrough(kindCounts, map[string]int64{copiedKey: 0})
		ok, err := st.writeDerived(ctx, kindCounts, int8(r), key, s.Start, keep,
			"n = ?, groups = ?, through = ?", []any{s.Total, encodeCounts(s.Groups), tb}, s.Total)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// DeriveHalfPastUsers is DeriveHalfPastCounts for a key's users: each
// hour's sketch is the union of its half hours', n its estimate.
func (st *Store) DeriveHalfPastUsers(ctx context.Context, u storage.UserScope, key string, from, to time.Time, keep time.Duration) (int, error) {
	to = st.beforeHalfPast(to)
	if !from.Before(to) {
		return 0, nil
	}
	type row struct {
		start time.Time
		b     []byte
	}
	var rows []row
	err := st.Users(ctx, storage.UsersQuery{Scope: u, Key: key, Res: storage.HalfPastHour, From: from, To: to}, func(start time.Time, b []byte) error {
		rows = append(rows, row{start, append([]byte(nil), b...)})
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range rows {
		var sk hll.Sketch
		if err := sk.MergeBinary(r.b); err != nil {
			return n, fmt.Errorf("cassandrastore: the users of %v: %w", r.start, err)
		}
		est := int64(sk.Estimate())
		tb := encodeThrough(kindUsers, map[string]int64{copiedKey: 0})
		ok, err := st.writeDerived(ctx, kindUsers, int8(u), key, r.start, keep,
			"sketch = ?, n = ?, through = ?", []any{sk.Append(nil), est, tb}, est)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// beforeHalfPast clips to to the hours from half past that are summed.
func (st *Store) beforeHalfPast(to time.Time) time.Time {
	if since, _ := st.sinceOf(storage.HalfPastHour); since.Before(to) {
		return since
	}
	return to
}

// writeDerived writes a derived row where none is, with its pack entry
// (n), in one conditional batch of its partition.
func (st *Store) writeDerived(ctx context.Context, kind, a int8, key string, slot time.Time, keep time.Duration, set string, vals []any, n int64) (bool, error) {
	res := storage.HalfPastHour
	p := part{kind, a, key, res, periodOf(res, slot)}
	ttl := ttlUntil(slot.Add(res.Duration()+keep), time.Now())
	if ttl == 0 {
		return false, nil // expired already
	}
	b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial).WithContext(ctx)
	args := append(append([]any{ttl}, vals...), p.kind, p.a, p.key, int8(p.res), p.period, slot)
	b.Query("UPDATE totals USING TTL ? SET "+set+" WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = null", args...)
	stmt, pargs := packUpdate(p, slot, n, ttl)
	b.Query(stmt, pargs...)
	applied, it, err := st.s.MapExecuteBatchCAS(b, map[string]any{})
	if it != nil {
		it.Close()
	}
	if err != nil {
		return false, fmt.Errorf("cassandrastore: write the hour from half past %v of %v: %w", slot, p, err)
	}
	return applied, nil
}
