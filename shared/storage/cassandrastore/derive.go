package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// ErrWritersRunning: a derivation found manifests it had not folded.
var ErrWritersRunning = errors.New("cassandrastore: events arrived while deriving: stop the workers first")

// DeriveSlots writes the slots of res (hours from half past, weeks) in
// [from, to) before its since of a partner and its sub-systems, which a
// keyspace upgraded across them does not hold: for an upgrade with the
// workers stopped, then SetHalfPastSince or SetWeeksSince moves their start
// back. It folds the partner's manifests first (and the other partners' of
// its sub-systems), then writes each slot as its tiles sum it (counts and
// groups; the union of their sketches, n its estimate), with its pack
// entry where res is packed, through the
// partners' applied marks (every manifest folded so far is in it, so no
// read or fold adds one again) and the partner's retention; over a row a
// fold wrote since the upgrade (a late event's, holding that event only),
// under that row's condition. It returns how many rows it wrote, and
// ErrWritersRunning if a manifest arrived meanwhile. Running it again
// rewrites the same figures.
func (st *Store) DeriveSlots(ctx context.Context, partner string, res storage.Res, from, to time.Time) (int, error) {
	since, later := st.sinceOf(res)
	if !later {
		return 0, fmt.Errorf("cassandrastore: %v slots are never summed: nothing to derive", res)
	}
	if since.Before(to) {
		to = since
	}
	if !from.Before(to) {
		return 0, nil
	}
	p, err := st.GetPartner(ctx, partner)
	if err != nil {
		return 0, err
	}
	keep := st.Retention(p)
	subs, err := st.ListSubSystems(ctx, partner, true)
	if err != nil {
		return 0, err
	}
	type key struct {
		kind, a int8
		key     string
	}
	keys := []key{{kindCounts, int8(storage.PartnerSubSystems), partner}, {kindCounts, int8(storage.PartnerTypes), partner}, {kindUsers, int8(storage.PartnerUsers), partner}}
	partners := map[string]bool{partner: true}
	for _, s := range subs {
		keys = append(keys, key{kindCounts, int8(storage.SubSystemTypes), s.ID}, key{kindUsers, int8(storage.SubSystemUsers), s.ID})
		ps, err := st.partnersOf(ctx, kindCounts, int8(storage.SubSystemTypes), s.ID)
		if err != nil {
			return 0, err
		}
		for _, q := range ps {
			partners[q] = true
		}
	}
	applied := map[string][ClaimBuckets]int64{}
	for q := range partners {
		if applied[q], err = st.foldAll(ctx, q); err != nil {
			return 0, err
		}
	}
	var mu sync.Mutex
	n := 0
	fns := make([]func(context.Context) error, len(keys))
	for i, k := range keys {
		fns[i] = func(ctx context.Context) error {
			// Every manifest folded so far, in the key's through's terms.
			marks := map[string]int64{copiedKey: 0} // never empty: a row without through is taken for none
			for q, a := range applied {
				for b, mt := range a {
					if mt == 0 {
						continue
					}
					if (k.a == int8(storage.SubSystemTypes) && k.kind == kindCounts) || (k.kind == kindUsers && storage.UserScope(k.a) == storage.SubSystemUsers) {
						marks[q+"/"+strconv.Itoa(b)] = mt
					} else if q == partner {
						marks[strconv.Itoa(b)] = mt
					}
				}
			}
			w, err := st.deriveKey(ctx, k.kind, k.a, k.key, res, from, to, keep, encodeThrough(k.kind, marks))
			mu.Lock()
			n += w
			mu.Unlock()
			return err
		}
	}
	if err := fanOut(ctx, 4, fns); err != nil {
		return n, err
	}
	for q, was := range applied {
		now, err := st.foldAll(ctx, q)
		if err != nil {
			return n, err
		}
		if now != was {
			return n, fmt.Errorf("%w (partner %s)", ErrWritersRunning, q)
		}
	}
	return n, nil
}

// foldAll folds a partner's manifests and returns its applied marks,
// refusing if any manifest is left above them.
func (st *Store) foldAll(ctx context.Context, partner string) ([ClaimBuckets]int64, error) {
	if err := st.FoldPartner(ctx, partner, time.Now()); err != nil {
		return [ClaimBuckets]int64{}, err
	}
	applied, _, err := st.readApplied(ctx, partner, true)
	if err != nil {
		return applied, err
	}
	left, err := st.readManifests(ctx, partner, applied, nil, false, true)
	if err != nil {
		return applied, err
	}
	if len(left) > 0 {
		return applied, fmt.Errorf("%w (partner %s: %d manifests)", ErrWritersRunning, partner, len(left))
	}
	return applied, nil
}

// deriveKey writes one key's slots of res in [from, to).
func (st *Store) deriveKey(ctx context.Context, kind, a int8, key string, res storage.Res, from, to time.Time, keep time.Duration, through []byte) (int, error) {
	type row struct {
		start time.Time
		set   string
		vals  []any
		n     int64
	}
	var rows []row
	if kind == kindCounts {
		slots, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.Rollup(a), Key: key, Res: res, From: from, To: to, Groups: true})
		if err != nil {
			return 0, err
		}
		for _, s := range slots {
			storage.CapGroups(s.Groups) // summed from finer rows: may name more
			rows = append(rows, row{s.Start, "n = ?, groups = ?, through = ?", []any{s.Total, encodeCounts(s.Groups), through}, s.Total})
		}
	} else {
		err := st.Users(ctx, storage.UsersQuery{Scope: storage.UserScope(a), Key: key, Res: res, From: from, To: to}, func(start time.Time, b []byte) error {
			var sk hll.Sketch
			if err := sk.MergeBinary(b); err != nil {
				return fmt.Errorf("cassandrastore: the users of %v: %w", start, err)
			}
			est := int64(sk.Estimate())
			rows = append(rows, row{start, "sketch = ?, n = ?, through = ?", []any{sk.Append(nil), est, through}, est})
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	n := 0
	for _, r := range rows {
		p := part{kind, a, key, res, periodOf(res, false, r.start)}
		ttl := ttlUntil(r.start.Add(res.Duration()+keep), time.Now())
		if ttl == 0 {
			continue // expired already
		}
		var old []byte
		err := st.s.Query("SELECT through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
			p.kind, p.a, p.key, int8(p.res), p.period, r.start).Consistency(gocql.Serial).WithContext(ctx).Scan(&old)
		if err != nil && !errors.Is(err, gocql.ErrNotFound) {
			return n, err
		}
		var cond any // no row: IF through = null
		if old != nil {
			cond = old
		}
		b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial).WithContext(ctx)
		args := append(append([]any{ttl}, r.vals...), p.kind, p.a, p.key, int8(p.res), p.period, r.start, cond)
		b.Query("UPDATE totals USING TTL ? SET "+r.set+" WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?", args...)
		if packed(res) {
			stmt, pargs := packUpdate(p, r.start, r.n, ttl)
			b.Query(stmt, pargs...)
		}
		applied, it, err := st.s.MapExecuteBatchCAS(b, map[string]any{})
		if it != nil {
			it.Close()
		}
		if err != nil {
			return n, fmt.Errorf("cassandrastore: write the %v %v of %v: %w", res, r.start, p, err)
		}
		if !applied {
			return n, fmt.Errorf("%w (the %v %v of %v changed)", ErrWritersRunning, res, r.start, p)
		}
		n++
	}
	return n, nil
}
