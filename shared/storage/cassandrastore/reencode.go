package cassandrastore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// ReencodeUsers rewrites the sketches of a key's users at res in [from, to)
// that an older release stored in another form than this one writes (dense
// sketches a byte a register, before nibbles) or without their estimate
// beside them (n, which UserEstimates reads instead of the sketch), and
// returns how many it rewrote. The registers stay the same, so every figure does; a row a fold
// changes meanwhile is left to that fold (the write is conditional on the
// row's through, at the fold's serial consistency), each row keeps its TTL
// (or none), and a row that holds no sketch is left as it is. Run it again
// after an error: it is idempotent.
//
// Folds re-encode the rows they write anyway; this is for closed slots no
// fold will write again (the benchmark's data set, for one).
func (st *Store) ReencodeUsers(ctx context.Context, scope storage.UserScope, key string, res storage.Res, from, to time.Time) (int, error) {
	if scope.IsTyped() {
		return 0, fmt.Errorf("cassandrastore: the users of each type were never in an older form: nothing to re-encode")
	}
	n := 0
	for _, period := range periods(res, false, from, to) {
		p := part{kindUsers, int8(scope), key, res, period}
		iter := st.s.Query("SELECT slot, sketch, n, through, TTL(through) FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot >= ? AND slot < ?",
			p.kind, p.a, p.key, int8(p.res), p.period, from, to).WithContext(ctx).PageSize(usersPage).Iter()
		var slot time.Time
		var sketch, through []byte
		var ttl *int
		var est *int64
		for iter.Scan(&slot, &sketch, &est, &through, &ttl) {
			ok, err := st.reencodeRow(ctx, p, slot, sketch, through, ttl, est != nil && bytes.HasPrefix(through, usersMark))
			if err != nil {
				iter.Close()
				return n, err
			}
			if ok {
				n++
			}
		}
		if err := iter.Close(); err != nil {
			return n, fmt.Errorf("cassandrastore: read sketches to re-encode: %w", err)
		}
	}
	return n, nil
}

// reencodeRow rewrites one row's sketch in this release's form, with its
// estimate, if it is in another or its estimate is not vouched for
// (estimated: n written with the sketch, through marked), and the row's
// through is still as read.
func (st *Store) reencodeRow(ctx context.Context, p part, slot time.Time, sketch, through []byte, ttl *int, estimated bool) (bool, error) {
	if len(sketch) == 0 || through == nil {
		return false, nil
	}
	var sk hll.Sketch
	if sk.MergeBinary(sketch) != nil {
		return false, nil // not a sketch: left as it is, failing its reads as before
	}
	b := sk.Append(nil)
	if bytes.Equal(b, sketch) && estimated {
		return false, nil
	}
	keep := 0 // no TTL: USING TTL 0 keeps none
	if ttl != nil {
		keep = *ttl
	}
	applied, err := st.s.Query("UPDATE totals USING TTL ? SET sketch = ?, n = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
		keep, b, int64(sk.Estimate()), markedThrough(through), p.kind, p.a, p.key, int8(p.res), p.period, slot, through).WithContext(ctx).
		SerialConsistency(gocql.Serial).MapScanCAS(map[string]any{}) // as a fold's: one Paxos round across data centres
	if err != nil {
		return false, fmt.Errorf("cassandrastore: re-encode the sketch of %v at %v: %w", p, slot, err)
	}
	return applied, nil
}

// markedThrough is a users row's through as this release writes it.
func markedThrough(b []byte) []byte {
	if bytes.HasPrefix(b, usersMark) {
		return b
	}
	return append(append(make([]byte, 0, len(usersMark)+len(b)), usersMark...), b...)
}
