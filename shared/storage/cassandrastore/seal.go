package cassandrastore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// A day's pack is a map of up to 24 cells, and a map costs Cassandra about
// twice what one blob does to read (docs/PERFORMANCE.md, session 26). Folds
// go on writing one hour's entry at a time, each with its own TTL, in the
// hour row's conditional batch. A reader that finds a pack of a day that
// ended at least sealAfter ago seals it, in the background: it reads the
// map with each entry's TTL, writes the entries with their expiries into
// the blob `sealed` (with those already sealed that have not expired) and
// deletes the map, under the condition that none of them changed since
// its read: the map, the seal, and pack_write, which every write of an
// entry sets to a fresh random number (a fold may rewrite an entry's n
// unchanged with a longer TTL, or PackCountHours with a shorter one; the
// map alone would not show it, and the seal would keep an expiry that is
// no longer the cell's). A read then takes the seal's entries that have
// not expired, and the map's over them: a late event's fold, after the
// seal, writes its entry in the map, which holds the row's n as of that
// fold.
//
// Every write of a pack entry is a conditional batch (fold, derive,
// PackCountHours) in the seal's partition, so Paxos orders each against
// the seal: an entry written after the seal is not shadowed by its
// deletion, and a seal after it fails its condition and is tried by a
// later read. No count outlives its events: an entry's expiry is its
// cell's at the latest (PastRetention).

// sealAfter is how long after a day's end its pack is sealed: most of its
// late events have come by then, and each later one leaves an entry in the
// map until a read seals it again.
const sealAfter = time.Hour

// sealsAtOnce bounds a store's seals under way; a pack found while they
// are all busy is sealed by a later read.
const sealsAtOnce = 2

// sealedVersion is the first byte of a seal.
const sealedVersion = 1

var (
	mSealed = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_storage_pack_seals_total",
		Help: "Days' packs of hours a reader sealed into one blob."})
	mSealFailed = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_storage_pack_seal_failures_total",
		Help: "Seals of a day's pack that failed (an error, not a lost condition: those are tried again by a later read)."})
)

type sealKey struct {
	p   part
	day time.Time
}

// encodeSealed is a seal of e, entry h expiring at exp[h] (Unix seconds;
// 0: never): the version, the bitmap of hours, then each hour's n and
// expiry as uvarints.
func encodeSealed(e packEntries, exp *[24]int64) []byte {
	b := make([]byte, 5, 5+24*12)
	b[0] = sealedVersion
	binary.BigEndian.PutUint32(b[1:], e.has)
	for h := range 24 {
		if e.has&(1<<h) == 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(e.n[h]))
		b = binary.AppendUvarint(b, uint64(exp[h]))
	}
	return b
}

// decodeSealed is a seal's entries that have not expired at now (Unix
// seconds), and each one's expiry; nil is no seal.
func decodeSealed(b []byte, now int64) (packEntries, [24]int64, error) {
	var e packEntries
	var exp [24]int64
	if b == nil {
		return e, exp, nil
	}
	if len(b) < 5 || b[0] != sealedVersion {
		return e, exp, fmt.Errorf("cassandrastore: a sealed pack of %d bytes, version %d: not one this release reads", len(b), firstByte(b))
	}
	has := binary.BigEndian.Uint32(b[1:])
	if has>>24 != 0 {
		return e, exp, fmt.Errorf("cassandrastore: a sealed pack with hours past 23 (%#x)", has)
	}
	b = b[5:]
	for h := range 24 {
		if has&(1<<h) == 0 {
			continue
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > 1<<62 {
			return e, exp, fmt.Errorf("cassandrastore: a sealed pack's hour %d: bad count", h)
		}
		b = b[k:]
		x, k := binary.Uvarint(b)
		if k <= 0 || x > 1<<40 {
			return e, exp, fmt.Errorf("cassandrastore: a sealed pack's hour %d: bad expiry", h)
		}
		b = b[k:]
		if x != 0 && int64(x) <= now {
			continue // expired with its cell
		}
		e.n[h], e.has, exp[h] = int64(n), e.has|1<<h, int64(x)
	}
	if len(b) != 0 {
		return e, exp, fmt.Errorf("cassandrastore: a sealed pack with %d bytes past its entries", len(b))
	}
	return e, exp, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// over is e with o's entries over it.
func (e packEntries) over(o packEntries) packEntries {
	for h := range 24 {
		if o.has&(1<<h) != 0 {
			e.n[h] = o.n[h]
		}
	}
	e.has |= o.has
	return e
}

// sealable tells whether a read at now that found map entries in the pack
// of the day starting at dayStart should seal it.
func (st *Store) sealable(dayStart, now time.Time) bool {
	return !now.Before(st.sealSince) && !now.Before(dayStart.Add(24*time.Hour+sealAfter))
}

// sealLater seals the pack at day (its clustering key) of p in the
// background, unless it is being sealed or sealsAtOnce seals are under way.
func (st *Store) sealLater(p part, day time.Time) {
	k := sealKey{p, day}
	if _, busy := st.sealing.LoadOrStore(k, true); busy {
		return
	}
	select {
	case st.sealSlots <- struct{}{}:
	default:
		st.sealing.Delete(k)
		return
	}
	// Under sealMu with Close's: no seal begins once Close waits for them.
	st.sealMu.Lock()
	if st.closed {
		st.sealMu.Unlock()
		<-st.sealSlots
		st.sealing.Delete(k)
		return
	}
	st.seals.Add(1)
	st.sealMu.Unlock()
	go func() {
		defer st.seals.Done()
		defer func() { <-st.sealSlots; st.sealing.Delete(k) }()
		ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
		defer cancel()
		if _, err := st.sealPack(ctx, p, day); err != nil {
			mSealFailed.Inc()
		}
	}()
}

// sealSelect reads a pack's map, its seal and each entry's TTL.
var sealSelect = func() string {
	var b strings.Builder
	b.WriteString("pack, sealed, pack_write")
	for h := range 24 {
		b.WriteString(", TTL(pack[" + strconv.Itoa(h) + "])")
	}
	return b.String()
}()

// sealPack seals the pack at day (its clustering key) of p: the map's
// entries, with their expiries, and the seal's that have not expired, into
// a new seal, and the map deleted, if neither changed since read. It tells
// whether it sealed.
func (st *Store) sealPack(ctx context.Context, p part, day time.Time) (bool, error) {
	table, where, args := p.rows()
	began := time.Now()
	now := began.Unix() // the TTLs read count from a time at or after it
	var m map[int]int64
	var old []byte
	var write *int64
	var ttls [24]*int
	dest := []any{&m, &old, &write}
	for h := range ttls {
		dest = append(dest, &ttls[h])
	}
	err := st.s.Query("SELECT "+sealSelect+" FROM "+table+" WHERE "+where+" AND slot = ?", append(args, day)...).
		WithContext(ctx).Scan(dest...)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cassandrastore: read a pack to seal: %w", err)
	}
	if len(m) == 0 {
		return false, nil
	}
	e, exp, err := decodeSealed(old, now)
	if err != nil {
		return false, err
	}
	var fresh packEntries
	for h, n := range m {
		if h < 0 || h >= 24 {
			return false, fmt.Errorf("cassandrastore: pack: hour %d", h)
		}
		fresh.n[h], fresh.has = n, fresh.has|1<<h
		exp[h] = 0
		if ttls[h] != nil {
			exp[h] = now + int64(*ttls[h])
		}
	}
	e = e.over(fresh)
	// The seal lives as long as its longest entry (no TTL if one never
	// expires); a read drops each entry at its own expiry.
	last, forever := int64(0), false
	for h := range 24 {
		if e.has&(1<<h) != 0 {
			forever = forever || exp[h] == 0
			last = max(last, exp[h])
		}
	}
	ttl := 0
	if !forever {
		ttl = int(last-now) + 1
	}
	if st.sealHook != nil {
		st.sealHook()
	}
	var oldArg, writeArg any
	if old != nil {
		oldArg = old
	}
	if write != nil {
		writeArg = *write
	}
	applied, err := st.s.Query("UPDATE "+table+" USING TTL ? SET sealed = ?, pack = null, pack_write = null WHERE "+where+" AND slot = ? IF pack = ? AND sealed = ? AND pack_write = ?",
		append(append([]any{ttl, encodeSealed(e, &exp)}, args...), day, m, oldArg, writeArg)...).
		SerialConsistency(gocql.Serial).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return false, fmt.Errorf("cassandrastore: seal a pack: %w", err)
	}
	if applied {
		mSealed.Inc()
	}
	return applied, nil
}
