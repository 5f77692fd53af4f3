package cassandrastore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// Writing a batch of events keeps three invariants, and counting keeps two
// more (rollups.go). None reads or counts a partition that grows with the
// events stored, nothing on the count path is ever deleted row by row, and
// none needs a read to see an earlier write at the operator's consistency
// level: every read that decides anything is a Paxos (SERIAL) read, fixed
// in code.
//
// I1 One claim per (partner, id). claims((partner_id, bucket), id) is only
//    ever written by INSERT … IF NOT EXISTS. An event is stored and counted
//    if and only if a batch claimed it; a redelivery, a second worker on the
//    same batch, or the same id with another timestamp finds the claim and
//    counts nothing. (Conformance: EventsIdempotent, EventsConcurrentDuplicates,
//    SameIDOtherTimestamp, ConcurrentWritersSameBucket.)
// I2 A claim group commits with its counts. The claims a batch makes in one
//    claim partition go in one conditional batch with a manifest row
//    ('~~' + manifest time + batch + group) holding the group's count per
//    (sub-system, event type, minute) and its users' sketches per minute,
//    from which every total is derived: both or neither. An event counts
//    from its claim; its rows follow in the same batch, or in the
//    redelivery if the worker stops in between (the message is acked only
//    after them). (Conformance: RedeliveryAfterCrash; crash tests here.)
// I3 Manifests are sealed in time order. The round also requires
//    sealed < manifest time (IF sealed < ?): once a folder has sealed a
//    claim partition up to T, no manifest at or below T can appear, so the
//    manifests up to T are final. A round refused by the seal is retried
//    with a later time; no clock needs to agree with another.
//
// An event past its retention (ts + retention already gone) is neither
// stored nor counted, as if it had expired: every row of an event and every
// total expires at the end of its time slot plus the retention, so no
// count outlives what it counts. (Conformance: PastRetention.)

const (
	// ClaimBuckets spreads one partner's claims. A claim partition holds
	// rate × horizon / ClaimBuckets rows; fewer buckets mean bigger claim
	// groups, so fewer Paxos rounds per event. Fixed: changing it remaps ids.
	ClaimBuckets = 32
	batchRows    = 50  // rows per unlogged batch, all of one partition
	claimRows    = 200 // claims per Paxos round, well under the batch size limit
	// manifestTTL bounds how long a manifest waits for a folder (folders
	// delete them once applied, normally seconds after their claims).
	manifestTTL = 30 * 24 * time.Hour
)

func dayOf(t time.Time) int {
	y, m, d := t.UTC().Date()
	return y*10000 + int(m)*100 + d
}

func claimBucket(id string) int16 {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	h ^= h >> 16 // decorrelate from storage.Bucket, which uses the low bits too
	return int16(h % ClaimBuckets)
}

// retentionOf is how long an event is kept.
func (st *Store) retentionOf(e *event.Event) time.Duration {
	if e.Retention > 0 {
		return e.Retention
	}
	return st.cfg.Retention
}

// ttlUntil is the TTL in seconds of a row that must live until end; 0 when end has passed.
func ttlUntil(end, now time.Time) int {
	s := int(end.Sub(now).Seconds())
	return max(s, 0)
}

type claimKey struct {
	partner string
	bucket  int16
}

// A claim group is at most claimRows claims of one claim partition; grp
// numbers it within its batch (bucket × 1024 + chunk). Its manifest's id
// sorts by manifest time mt (unix nanoseconds): ids of events never hold
// '~' (event.ValidID), and manifests of before version 9 ('~' and a uuid)
// sort below every '~~'.
func manifestID(mt int64, batch gocql.UUID, grp int) string {
	return fmt.Sprintf("~~%016x/%s/%d", mt, batch, grp)
}

// manifestBound sorts after every manifest of time mt and before any later one.
func manifestBound(mt int64) string { return fmt.Sprintf("~~%016x~", mt) }

// manifestsEnd sorts after every manifest.
const manifestsEnd = "~~~"

// manifestTime is the time of a manifest id, false for anything else.
func manifestTime(id string) (int64, bool) {
	if len(id) < 19 || id[:2] != "~~" || id[18] != '/' {
		return 0, false
	}
	mt, err := strconv.ParseUint(id[2:18], 16, 64)
	return int64(mt), err == nil
}

func (st *Store) WriteEvents(ctx context.Context, events []event.Event) (storage.WriteResult, error) {
	var res storage.WriteResult
	now := time.Now()
	seen := make(map[[2]string][16]byte, len(events))
	groups := map[claimKey][]int{}
	for i := range events {
		e := &events[i]
		k, d := [2]string{e.PartnerID, e.ID}, e.Digest()
		if prev, ok := seen[k]; ok {
			if prev != d {
				res.Conflicts = append(res.Conflicts, i)
			}
			continue
		}
		seen[k] = d
		if !e.Timestamp.Add(st.retentionOf(e)).After(now) {
			res.Expired = append(res.Expired, i)
			continue
		}
		ck := claimKey{e.PartnerID, claimBucket(e.ID)}
		groups[ck] = append(groups[ck], i)
	}
	if len(groups) == 0 {
		return res, nil
	}
	if err := st.notePartners(ctx, events); err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: note sub-systems' partners: %w", err)
	}
	batch := gocql.TimeUUID()

	// Claim (I1, I2, I3), each claim partition's group in its own Paxos round.
	type mineAt struct{ i, grp int }
	type outcome struct {
		mine      []mineAt // events claimed by this batch, and their claim group
		conflicts []int
		heal      []int // already claimed by another batch, same content and time: rewrite its rows
	}
	var mu sync.Mutex
	var all outcome
	var fns []func(context.Context) error
	for ck, idx := range groups {
		for c := 0; c*claimRows < len(idx); c++ {
			chunk, grp := idx[c*claimRows:min((c+1)*claimRows, len(idx))], int(ck.bucket)*1024+c
			fns = append(fns, func(ctx context.Context) error {
				o, err := st.claimEvents(ctx, batch, grp, ck, events, chunk)
				if err != nil {
					return err
				}
				mu.Lock()
				for _, i := range o.mine {
					all.mine = append(all.mine, mineAt{i, grp})
				}
				all.conflicts = append(all.conflicts, o.conflicts...)
				all.heal = append(all.heal, o.heal...)
				mu.Unlock()
				return nil
			})
		}
	}
	if err := fanOut(ctx, st.cfg.WriteConcurrency, fns); err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: claim: %w", refused(err))
	}
	res.Conflicts = append(res.Conflicts, all.conflicts...)
	sort.Ints(res.Conflicts)

	// Store the claimed events, and heal rows of claimed events whose batch
	// may have stopped before writing them (same content and timestamp).
	rows := rowSet{}
	mine := make(map[int]int, len(all.mine)) // event index -> claim group
	for _, m := range all.mine {
		mine[m.i] = m.grp
	}
	for _, i := range all.heal {
		if err := st.eventRows(rows, &events[i], now); err != nil {
			return storage.WriteResult{}, err
		}
	}
	for i := range mine {
		if err := st.eventRows(rows, &events[i], now); err != nil {
			return storage.WriteResult{}, err
		}
	}
	if err := st.execRows(ctx, rows); err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: write events: %w", refused(err))
	}

	// The counts committed with the claims; a folder adds them into the
	// totals.
	for ck := range groups {
		st.folder.touch(ck.partner)
		st.forgetRecent(ck.partner)
	}
	res.Written = len(all.mine)
	return res, nil
}

// claimEvents claims the events idx of one claim partition for batch, retrying
// without the ids already claimed, until the rest commits.
func (st *Store) claimEvents(ctx context.Context, batch gocql.UUID, grp int, ck claimKey, events []event.Event, idx []int) (o struct {
	mine, conflicts, heal []int
}, err error) {
	pending := idx
	attempts := 0
	mt := time.Now().UnixNano()
	var tried []string // manifest ids of rounds whose fate is unknown
	for len(pending) > 0 {
		attempts++
		b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial)
		// Keyed by value: each distinct cell is encoded once, not once an
		// event (four user scopes an event since the users of each type).
		counts := map[mcell]int64{}
		users := map[ucell]*hll.Sketch{}
		var retention time.Duration
		for _, i := range pending {
			e := &events[i]
			d := e.Digest()
			b.Query("INSERT INTO claims (partner_id, bucket, id, batch_id, grp, ts, sub_system_id, event_type, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
				ck.partner, ck.bucket, e.ID, batch, grp, e.Timestamp.UTC(), e.SubSystemID, e.EventType, d[:], st.horizonSeconds())
			c := cellOf(e)
			counts[c]++
			if u := storage.UserOf(e); u != "" {
				h := hll.Hash(u)
				for _, sc := range storage.UserScopes {
					if !sc.Keeps(e) {
						continue
					}
					k := ucell{sc, sc.Key(e), c.Minute}
					if users[k] == nil {
						users[k] = &hll.Sketch{}
					}
					users[k].AddHash(h)
				}
			}
			retention = max(retention, st.retentionOf(e))
		}
		cells := make(map[string]int64, len(counts))
		for c, n := range counts {
			cells[c.String()] = n
		}
		sketches := make(map[string][]byte, len(users))
		for k, s := range users {
			sketches[k.String()] = s.Append(nil)
		}
		id := manifestID(mt, batch, grp)
		b.Query("INSERT INTO claims (partner_id, bucket, id, batch_id, grp, cells, users, retention) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
			ck.partner, ck.bucket, id, batch, grp, cells, sketches, int(retention.Seconds()), int(manifestTTL.Seconds()))
		// I3: only below the seal (the partition's meta row, id "").
		b.Query("UPDATE claims SET batch_id = ? WHERE partner_id = ? AND bucket = ? AND id = '' IF sealed < ?", batch, ck.partner, ck.bucket, mt)
		first := map[string]any{}
		applied, iter, err := b.MapExecCASContext(ctx, first)
		if err != nil {
			if iter != nil {
				iter.Close()
			}
			// A timed-out round may have committed: retrying the same
			// statements is safe (they then find this batch's own claims).
			if attempts < 8 && ctx.Err() == nil && retryableCAS(err) {
				tried = append(tried, id)
				sleepCtx(ctx, time.Duration(attempts)*20*time.Millisecond)
				continue
			}
			return o, err
		}
		if applied {
			iter.Close()
			o.mine = append(o.mine, pending...)
			return o, nil
		}
		// The rows of the round's conditions: the first in first, the rest
		// in iter; the meta row (id "") holds sealed.
		existing := map[string]map[string]any{}
		var sealed *int64
		for row := first; ; {
			if id, _ := row["id"].(string); id != "" {
				existing[id] = row
			} else if s, ok := row["sealed"].(int64); ok && s > 0 {
				sealed = &s
			}
			row = map[string]any{}
			if !iter.MapScan(row) {
				break
			}
		}
		if err := iter.Close(); err != nil {
			return o, err
		}
		for _, t := range tried {
			if _, ok := existing[t]; ok {
				// An earlier, timed-out round of this group committed.
				o.mine = append(o.mine, pending...)
				return o, nil
			}
		}
		// Nulls scan as zero values: a partition never sealed shows as 0 or
		// not at all.
		switch {
		case sealed != nil && *sealed >= mt:
			// A folder sealed the partition past this round: go again later.
			if attempts >= 8 {
				return o, fmt.Errorf("cassandrastore: claim partition %s/%d sealed past every round (%d)", ck.partner, ck.bucket, *sealed)
			}
			mt = max(time.Now().UnixNano(), *sealed+1)
			continue
		case len(existing) == 0:
			// No claim in the way, so the seal is null: start it at 0, so
			// IF sealed < t holds.
			if attempts >= 8 {
				return o, fmt.Errorf("cassandrastore: claim partition %s/%d: no round commits", ck.partner, ck.bucket)
			}
			if err := st.s.Query("UPDATE claims SET sealed = 0 WHERE partner_id = ? AND bucket = ? AND id = '' IF sealed = null",
				ck.partner, ck.bucket).SerialConsistency(gocql.Serial).WithContext(ctx).Exec(); err != nil {
				return o, err
			}
			continue
		}
		var rest []int
		for _, i := range pending {
			e := &events[i]
			row, ok := existing[e.ID]
			if !ok {
				rest = append(rest, i)
				continue
			}
			owner, _ := row["batch_id"].(gocql.UUID)
			digest, _ := row["digest"].([]byte)
			ts, _ := row["ts"].(time.Time)
			d := e.Digest()
			switch {
			case owner == batch:
				o.mine = append(o.mine, i)
			case !bytes.Equal(digest, d[:]):
				o.conflicts = append(o.conflicts, i)
			default:
				// Stored before, by another batch: a duplicate, counted by
				// that batch's manifest. That batch may have stopped between
				// its claim and its rows: write them again (same content).
				if ts.Equal(e.Timestamp.UTC().Truncate(time.Millisecond)) { // Cassandra keeps milliseconds
					o.heal = append(o.heal, i)
				}
			}
		}
		pending = rest
	}
	return o, nil
}

func retryableCAS(err error) bool {
	var wt *gocql.RequestErrWriteTimeout
	var rt *gocql.RequestErrReadTimeout
	var un *gocql.RequestErrUnavailable
	return errors.As(err, &wt) || errors.As(err, &rt) || errors.As(err, &un) || errors.Is(err, gocql.ErrTimeoutNoResponse)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (st *Store) horizonSeconds() int { return int(st.cfg.DedupHorizon.Seconds()) }

// eventRows adds an event's two rows, expiring with the event.
func (st *Store) eventRows(rows rowSet, e *event.Event, now time.Time) error {
	ts := e.Timestamp.UTC()
	ttl := ttlUntil(ts.Add(st.retentionOf(e)), now)
	if ttl == 0 {
		return nil
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("cassandrastore: %w: %w", storage.ErrRefused, err)
	}
	minute, bucket := ts.Truncate(time.Minute), int8(storage.Bucket(e.ID))
	rows.add(fmt.Sprint("p", e.PartnerID, minute.Unix(), bucket),
		"INSERT INTO events_by_partner_minute (partner_id, minute, bucket, ts, id, sub_system_id, event_type, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
		e.PartnerID, minute, bucket, ts, e.ID, e.SubSystemID, e.EventType, string(body), ttl)
	rows.add(fmt.Sprint("s", e.SubSystemID, minute.Unix(), bucket),
		"INSERT INTO events_by_sub_system_minute (sub_system_id, minute, bucket, ts, id, partner_id, event_type) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
		e.SubSystemID, minute, bucket, ts, e.ID, e.PartnerID, e.EventType, ttl)
	return nil
}

// refused marks errors Cassandra gives for the data itself (an invalid
// request: a key or value too large), which no retry can fix.
func refused(err error) error {
	var re gocql.RequestError
	if errors.As(err, &re) && re.Code() == gocql.ErrCodeInvalid {
		return fmt.Errorf("%w: %w", storage.ErrRefused, err)
	}
	return err
}

type partitionRows struct {
	stmt string
	rows [][]any
}

// rowSet groups rows by partition for unlogged batches.
type rowSet map[string]*partitionRows

func (rs rowSet) add(key, stmt string, args ...any) {
	p := rs[key+"\x00"+stmt]
	if p == nil {
		p = &partitionRows{stmt: stmt}
		rs[key+"\x00"+stmt] = p
	}
	p.rows = append(p.rows, args)
}

func (st *Store) execRows(ctx context.Context, rs rowSet) error {
	var fns []func(context.Context) error
	for _, p := range rs {
		for i := 0; i < len(p.rows); i += batchRows {
			chunk := p.rows[i:min(i+batchRows, len(p.rows))]
			stmt := p.stmt
			fns = append(fns, func(ctx context.Context) error {
				if len(chunk) == 1 {
					return st.write(stmt, chunk[0]...).ExecContext(ctx)
				}
				b := st.s.Batch(gocql.UnloggedBatch)
				for _, args := range chunk {
					b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: stmt, Args: args, Idempotent: true})
				}
				return b.ExecContext(ctx)
			})
		}
	}
	return fanOut(ctx, st.cfg.WriteConcurrency, fns)
}

func (st *Store) GetEvent(ctx context.Context, partnerID, id string) (event.Event, error) {
	var e event.Event
	var ts time.Time
	if err := st.s.Query("SELECT ts FROM claims WHERE partner_id = ? AND bucket = ? AND id = ?", partnerID, claimBucket(id), id).ScanContext(ctx, &ts); err != nil {
		return e, notFound(err)
	}
	var body string
	if err := st.s.Query("SELECT body FROM events_by_partner_minute WHERE partner_id = ? AND minute = ? AND bucket = ? AND ts = ? AND id = ?",
		partnerID, ts.UTC().Truncate(time.Minute), int8(storage.Bucket(id)), ts, id).ScanContext(ctx, &body); err != nil {
		return e, notFound(err)
	}
	return e, event.DecodeStored([]byte(body), &e)
}

func (st *Store) ListEvents(ctx context.Context, q storage.EventsQuery) ([]event.Event, error) {
	return storage.ListEvents(ctx, st, q, st.minuteEvents)
}

// minuteEvents reads a partner's events of one minute from its 16 bucket
// partitions, in one statement: its partitions are one replica set's
// neighbours in time only by chance, but a statement each cost the
// coordinator 16 requests' overhead for about 14 rows each (a page of 100
// of a busy partner reads one minute).
func (st *Store) minuteEvents(ctx context.Context, partnerID string, minute time.Time, f storage.MinuteFilter) ([]storage.StoredEvent, error) {
	stmt := "SELECT ts, id, body FROM events_by_partner_minute WHERE partner_id = ? AND minute = ? AND bucket IN ?"
	args := []any{partnerID, minute.UTC(), allBuckets}
	// A listing of one sub-system or type has the node leave out the
	// others: it reads them all the same, but sends only what may match (a
	// type among 50 is a few of a busy minute's hundreds of bodies).
	// Filtering within the named partitions scans nothing more.
	if f.SubSystemID != "" {
		stmt, args = stmt+" AND sub_system_id = ?", append(args, f.SubSystemID)
	}
	if f.EventType != "" {
		stmt, args = stmt+" AND event_type = ?", append(args, f.EventType)
	}
	if f.SubSystemID != "" || f.EventType != "" {
		stmt += " ALLOW FILTERING"
	}
	iter := st.s.Query(stmt, args...).WithContext(ctx).PageSize(1000).Iter()
	var out []storage.StoredEvent
	// Scanned into buffers the driver reuses: a listing of one type reads
	// many minutes and keeps few of their events.
	var (
		at       time.Time
		id, body []byte
	)
	for iter.Scan(&at, &id, &body) {
		if f.Maybe(body) {
			out = append(out, storage.StoredEvent{At: at, ID: string(id), Body: bytes.Clone(body)})
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cassandrastore: list events: %w", err)
	}
	return out, nil
}

// allBuckets names every bucket of a minute (bucket IN ?).
var allBuckets = func() []int8 {
	bs := make([]int8, storage.Buckets)
	for b := range bs {
		bs[b] = int8(b)
	}
	return bs
}()
