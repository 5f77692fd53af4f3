package cassandrastore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// A series of hours (a 30-day hourly report) reads each hour's total and
// users' estimate: 1,440 rows, about 5 µs of the JVM's CPU each. So each
// day's hours are also packed in one row of their partition: the pack of a
// day maps each hour to its row's n (the total of a counts row, the
// estimate of a users row). A fold writes the hour row and its pack entry
// in the same conditional batch (one partition), so the entry is always
// the row's n as of the same write: a report reads 30 packs where it read
// 720 rows, and treats a pack entry as it would the row (the rows a
// manifest above the floor adds to are read whole, as before).
//
// A pack's clustering key is the day of the month as milliseconds past the
// epoch: no slot is in 1970, so no read of slots meets a pack. Packs hold
// every hour from the layout row "packs-hour" on (Migrate, with the old
// workers stopped, as for any layout change; PackCountHours and
// PackUserHours write them for hours before); a read of hours before it
// reads the rows.

// packed tells whether res's slots are packed.
func packed(res storage.Res) bool { return res == storage.Hour || res == storage.HalfPastHour }

// packSlot is the clustering key of the pack holding slot t.
func packSlot(t time.Time) time.Time { return time.UnixMilli(int64(t.UTC().Day())).UTC() }

// packKey is t's entry in its pack.
func packKey(t time.Time) int { return t.UTC().Hour() }

// packUpdate is the statement writing slot's entry of its pack, for a
// batch with the row's own conditional update. It also sets pack_write to
// a fresh random number: a seal conditional on the one it read fails
// after any write of an entry, even of the same n with another TTL
// (seal.go).
func packUpdate(p part, slot time.Time, n int64, ttl int) (string, []any) {
	table, where, args := p.rows()
	return "UPDATE " + table + " USING TTL ? SET pack[?] = ?, pack_write = ? WHERE " + where + " AND slot = ?",
		append(append([]any{ttl, packKey(slot), n, int64(rand.Uint64())}, args...), packSlot(slot))
}

// usesPacks tells whether a read of res's totals from from on (each slot's
// n, no groups, no through) may read packs.
func (st *Store) usesPacks(res storage.Res, from time.Time, withGroups bool) bool {
	since := st.packsSince
	if res == storage.HalfPastHour {
		since, _ = st.sinceOf(res) // packed from their start
	}
	return packed(res) && !withGroups && !res.Slot(from).Before(since)
}

// packTotals reads the packs of the slots starting in [from, to) (and in
// only, when set), each as a row holding n (est: a users row's estimate).
func (st *Store) packTotals(ctx context.Context, kind, a int8, key string, res storage.Res, from, to time.Time, only storage.Spans, est bool) (map[time.Time]*total, error) {
	var mu sync.Mutex
	// Sized for every slot of the range: grown a row at a time, it was
	// rehashed several times a report.
	slots := to.Sub(from)
	if only != nil {
		slots = 0
		for _, sp := range only {
			slots += sp.To.Sub(sp.From)
		}
	}
	rows := make(map[time.Time]*total, min(max(0, int(slots/res.Duration())), 1<<12))
	var fns []func(context.Context) error
	typed := typedPart(kind, a)
	for t := periodStart(res, typed, from); t.Before(to); t = nextPeriod(res, typed, t) {
		p := part{kind, a, key, res, periodOf(res, typed, t)}
		lo, hi := from, nextPeriod(res, typed, t)
		if t.After(lo) {
			lo = t
		}
		if to.Before(hi) {
			hi = to
		}
		first, last := packSlot(lo), packSlot(hi.Add(-time.Nanosecond))
		fns = append(fns, func(ctx context.Context) error {
			table, where, args := p.rows()
			iter := st.s.Query("SELECT slot, pack, sealed FROM "+table+" WHERE "+where+" AND slot >= ? AND slot <= ?",
				append(args, first, last)...).WithContext(ctx).PageSize(64).Iter()
			var day time.Time
			var pack packEntries
			var sealed []byte
			y, m, _ := lo.UTC().Date()
			local := make([]total, 0, 24*max(0, int(last.Sub(first)/time.Millisecond)+1))
			at := make([]time.Time, 0, cap(local))
			now := time.Now()
			for iter.Scan(&day, &pack, &sealed) {
				d := time.Date(y, m, int(day.UnixMilli()), 0, 0, 0, 0, time.UTC).Add(res.Phase())
				if pack.has != 0 && st.sealable(d, now) {
					st.sealLater(p, day)
				}
				if sealed != nil {
					// The seal's entries, the map's over them (seal.go).
					e, _, err := decodeSealed(sealed, now.Unix())
					if err != nil {
						iter.Close()
						return err
					}
					pack = e.over(pack)
				}
				for h := range pack.n {
					if pack.has&(1<<h) == 0 {
						continue
					}
					slot := d.Add(time.Duration(h) * time.Hour)
					if slot.Before(lo) || !slot.Before(hi) || only != nil && !only.Has(res, slot) {
						continue
					}
					local = append(local, total{n: pack.n[h], est: est})
					at = append(at, slot)
				}
			}
			if err := iter.Close(); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range local {
				rows[at[i]] = &local[i]
			}
			return nil
		})
	}
	if err := fanOut(ctx, 8, fns); err != nil {
		return nil, err
	}
	return rows, nil
}

// packEntries is a pack as read, decoded without reflection or a map (a
// 30-day hourly report reads 60 of them): n[h] is hour h's entry, present
// where has has bit h.
type packEntries struct {
	n   [24]int64
	has uint32
}

// UnmarshalCQL decodes a map<int, bigint> (protocol v3 and later: int32
// sizes); an entry outside 0-23 is an error, not a silent drop.
func (p *packEntries) UnmarshalCQL(_ gocql.TypeInfo, data []byte) error {
	*p = packEntries{}
	if data == nil {
		return nil
	}
	// next is the next int32 and, when sized, the bytes it sizes.
	next := func(sized bool) (int32, []byte, error) {
		if len(data) < 4 {
			return 0, nil, fmt.Errorf("cassandrastore: pack: truncated")
		}
		n := int32(binary.BigEndian.Uint32(data))
		data = data[4:]
		if !sized {
			return n, nil, nil
		}
		if n < 0 || int(n) > len(data) {
			return 0, nil, fmt.Errorf("cassandrastore: pack: bad size %d", n)
		}
		b := data[:n]
		data = data[n:]
		return n, b, nil
	}
	cnt, _, err := next(false)
	if err != nil {
		return err
	}
	if cnt < 0 || cnt > 24 {
		return fmt.Errorf("cassandrastore: pack: %d entries", cnt)
	}
	for range cnt {
		_, k, err := next(true)
		if err != nil {
			return err
		}
		_, v, err := next(true)
		if err != nil {
			return err
		}
		if len(k) != 4 || len(v) != 8 {
			return fmt.Errorf("cassandrastore: pack: an entry of %d and %d bytes", len(k), len(v))
		}
		h := int32(binary.BigEndian.Uint32(k))
		if h < 0 || h >= 24 {
			return fmt.Errorf("cassandrastore: pack: hour %d", h)
		}
		p.n[h], p.has = int64(binary.BigEndian.Uint64(v)), p.has|1<<h
	}
	if len(data) != 0 {
		return fmt.Errorf("cassandrastore: pack: %d bytes past its entries", len(data))
	}
	return nil
}

// PackCountHours writes the packs of a rollup key's hours in [from, to),
// each with its row as it stands (under the row's own condition, so a
// fold in between wins, and writes the entry itself), and returns how many
// it wrote: for hours folded before packs were kept. Then SetPacksSince
// may move the packs' start back. Idempotent.
func (st *Store) PackCountHours(ctx context.Context, r storage.Rollup, key string, from, to time.Time) (int, error) {
	return st.packHours(ctx, kindCounts, int8(r), key, from, to)
}

// PackUserHours is PackCountHours for a key's users (their estimates).
func (st *Store) PackUserHours(ctx context.Context, u storage.UserScope, key string, from, to time.Time) (int, error) {
	if u.IsTyped() {
		return 0, fmt.Errorf("cassandrastore: the users of each type are packed as they are folded: nothing to pack")
	}
	return st.packHours(ctx, kindUsers, int8(u), key, from, to)
}

func (st *Store) packHours(ctx context.Context, kind, a int8, key string, from, to time.Time) (int, error) {
	n := 0
	for _, period := range periods(storage.Hour, false, from, to) {
		p := part{kind, a, key, storage.Hour, period}
		began := time.Now()
		iter := st.s.Query("SELECT slot, n, sketch, through, TTL(through) FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot >= ? AND slot < ?",
			p.kind, p.a, p.key, int8(p.res), p.period, from, to).WithContext(ctx).PageSize(usersPage).Iter()
		var slot time.Time
		var count *int64
		var sketch, through []byte
		var ttl *int
		for iter.Scan(&slot, &count, &sketch, &through, &ttl) {
			if through == nil {
				continue
			}
			v := int64(0)
			if count != nil {
				v = *count
			}
			if kind == kindUsers {
				var sk hll.Sketch
				if err := sk.MergeBinary(sketch); err != nil {
					continue // not a sketch: left to fail its reads as before
				}
				v = int64(sk.Estimate())
			}
			keep := 0
			if ttl != nil {
				// The TTL left when read, less the time since the read
				// began: the entry (and through, rewritten) expire no
				// later than the row's n.
				keep = *ttl - int(time.Since(began)/time.Second) - 1
				if keep <= 0 {
					continue // expiring: nothing to pack
				}
			}
			b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial).WithContext(ctx)
			b.Query("UPDATE totals USING TTL ? SET through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
				keep, through, p.kind, p.a, p.key, int8(p.res), p.period, slot, through)
			stmt, args := packUpdate(p, slot, v, keep)
			b.Query(stmt, args...)
			applied, it, err := st.s.MapExecuteBatchCAS(b, map[string]any{})
			if it != nil {
				it.Close()
			}
			if err != nil {
				iter.Close()
				return n, fmt.Errorf("cassandrastore: pack the hour %v of %v: %w", slot, p, err)
			}
			if applied {
				n++
			}
		}
		if err := iter.Close(); err != nil {
			return n, fmt.Errorf("cassandrastore: read hours to pack: %w", err)
		}
	}
	return n, nil
}
