package cassandrastore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
)

// Writing a batch of events:
//
//  1. skip events whose id is in event_ids (fully written before);
//  2. write the rest: events by partner and by sub-system, and one narrow
//     row per event in the minute tables (unlogged batches, one partition each);
//  3. recount every minute touched, server-side, and write the absolute
//     counts into the rollup tables;
//  4. write event_ids, the marker that all of the above is done.
//
// A crash anywhere leaves no marker, so the redelivered event goes through
// all four steps again; every write is an idempotent upsert.
//
// Rollup cells are max-registers: a count n is written with USING TIMESTAMP n,
// and Cassandra keeps the cell with the highest timestamp. Counts of a minute
// only grow (events are never deleted, only expire with their rollups), and
// the recount that starts after the last write of a minute sees every event,
// so the largest count written is the exact count, whatever order concurrent
// workers' writes arrive in. This table is written in no other way.

const batchRows = 50 // rows per unlogged batch, all of one partition

func dayOf(t time.Time) int {
	y, m, d := t.UTC().Date()
	return y*10000 + int(m)*100 + d
}

type partitionRows struct {
	stmt string
	rows [][]any
}

// rowSet groups rows by partition for unlogged batches.
type rowSet map[string]*partitionRows

func (rs rowSet) add(key, stmt string, args ...any) {
	p := rs[key]
	if p == nil {
		p = &partitionRows{stmt: stmt}
		rs[key] = p
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

// existing returns the (partner, id) pairs already fully written, with
// their digests (nil for ids written before digests were kept).
func (st *Store) existing(ctx context.Context, evs []event.Event) (map[[2]string][]byte, error) {
	groups := map[[2]string][]string{}
	for _, e := range evs {
		k := [2]string{e.PartnerID, strconv.Itoa(storage.Bucket(e.ID))}
		groups[k] = append(groups[k], e.ID)
	}
	type hit struct {
		k      [2]string
		digest []byte
	}
	found := map[[2]string][]byte{}
	results := make(chan hit, len(evs))
	var fns []func(context.Context) error
	for k, ids := range groups {
		bucket, _ := strconv.Atoi(k[1])
		fns = append(fns, func(ctx context.Context) error {
			iter := st.s.Query("SELECT id, digest FROM event_ids WHERE partner_id = ? AND bucket = ? AND id IN ?", k[0], int8(bucket), ids).WithContext(ctx).Iter()
			var id string
			var digest []byte
			for iter.Scan(&id, &digest) {
				results <- hit{[2]string{k[0], id}, digest}
				digest = nil
			}
			return iter.Close()
		})
	}
	err := fanOut(ctx, st.cfg.WriteConcurrency, fns)
	close(results)
	for r := range results {
		found[r.k] = r.digest
	}
	return found, err
}

func (st *Store) WriteEvents(ctx context.Context, events []event.Event) (storage.WriteResult, error) {
	var res storage.WriteResult
	seen := make(map[[2]string][16]byte, len(events))
	batch := make([]event.Event, 0, len(events))
	digests := make([][16]byte, 0, len(events))
	for i, e := range events {
		k, d := [2]string{e.PartnerID, e.ID}, e.Digest()
		if prev, ok := seen[k]; ok {
			if prev != d {
				res.Conflicts = append(res.Conflicts, i)
			}
			continue
		}
		seen[k] = d
		batch = append(batch, e)
		digests = append(digests, d)
	}
	done, err := st.existing(ctx, batch)
	if err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: check ids: %w", err)
	}
	index := make(map[[2]string]int, len(events))
	for i, e := range events {
		if _, ok := index[[2]string{e.PartnerID, e.ID}]; !ok {
			index[[2]string{e.PartnerID, e.ID}] = i
		}
	}
	rows, ids := rowSet{}, rowSet{}
	// touched minutes, with the TTL their rollup rows get
	subMinutes := map[[2]any]int{}
	partnerMinutes := map[[2]any]int{}
	fresh := 0
	for bi, e := range batch {
		if stored, ok := done[[2]string{e.PartnerID, e.ID}]; ok {
			if stored != nil && !bytes.Equal(stored, digests[bi][:]) {
				res.Conflicts = append(res.Conflicts, index[[2]string{e.PartnerID, e.ID}])
			}
			continue
		}
		fresh++
		ts := e.Timestamp.UTC()
		day, bucket := dayOf(ts), int8(storage.Bucket(e.ID))
		minute := ts.Truncate(time.Minute)
		body, err := json.Marshal(e)
		if err != nil {
			return storage.WriteResult{}, fmt.Errorf("cassandrastore: %w: %w", storage.ErrRefused, err)
		}
		ttl := st.ttl
		if e.Retention > 0 {
			ttl = int(e.Retention.Seconds())
		}
		rows.add(fmt.Sprint("p", e.PartnerID, day, bucket),
			("INSERT INTO events_by_partner (partner_id, day, bucket, ts, id, sub_system_id, event_type, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"),
			e.PartnerID, day, bucket, ts, e.ID, e.SubSystemID, e.EventType, string(body), ttl)
		rows.add(fmt.Sprint("s", e.SubSystemID, day, bucket),
			("INSERT INTO events_by_sub_system (sub_system_id, day, bucket, ts, id, partner_id, event_type, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"),
			e.SubSystemID, day, bucket, ts, e.ID, e.PartnerID, e.EventType, string(body), ttl)
		rows.add(fmt.Sprint("ms", e.SubSystemID, minute.Unix()),
			("INSERT INTO minute_keys_by_sub_system (sub_system_id, minute, event_type, partner_id, id) VALUES (?, ?, ?, ?, ?) USING TTL ?"),
			e.SubSystemID, minute, e.EventType, e.PartnerID, e.ID, ttl)
		rows.add(fmt.Sprint("mp", e.PartnerID, minute.Unix()),
			("INSERT INTO minute_keys_by_partner (partner_id, minute, sub_system_id, id) VALUES (?, ?, ?, ?) USING TTL ?"),
			e.PartnerID, minute, e.SubSystemID, e.ID, ttl)
		ids.add(fmt.Sprint("i", e.PartnerID, bucket),
			("INSERT INTO event_ids (partner_id, bucket, id, sub_system_id, day, ts, digest) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"),
			e.PartnerID, bucket, e.ID, e.SubSystemID, day, ts, digests[bi][:], ttl)
		subMinutes[[2]any{e.SubSystemID, minute}] = max(subMinutes[[2]any{e.SubSystemID, minute}], ttl)
		partnerMinutes[[2]any{e.PartnerID, minute}] = max(partnerMinutes[[2]any{e.PartnerID, minute}], ttl)
	}
	if fresh == 0 {
		return res, nil
	}
	if err := st.execRows(ctx, rows); err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: write events: %w", refused(err))
	}
	if err := st.recount(ctx, subMinutes, partnerMinutes); err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: recount rollups: %w", err)
	}
	if err := st.execRows(ctx, ids); err != nil {
		return storage.WriteResult{}, fmt.Errorf("cassandrastore: write event ids: %w", refused(err))
	}
	res.Written = fresh
	return res, nil
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

// recount counts the touched minutes from their narrow rows and writes the
// absolute counts as max-registers.
func (st *Store) recount(ctx context.Context, subMinutes, partnerMinutes map[[2]any]int) error {
	var fns []func(context.Context) error
	for k, ttl := range subMinutes {
		id, minute := k[0].(string), k[1].(time.Time)
		fns = append(fns, func(ctx context.Context) error {
			return st.recountOne(ctx,
				"SELECT event_type, COUNT(*) FROM minute_keys_by_sub_system WHERE sub_system_id = ? AND minute = ? GROUP BY event_type",
				"INSERT INTO rollup_sub_system (sub_system_id, day, minute, event_type, n) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
				id, minute, ttl)
		})
	}
	for k, ttl := range partnerMinutes {
		id, minute := k[0].(string), k[1].(time.Time)
		fns = append(fns, func(ctx context.Context) error {
			return st.recountOne(ctx,
				"SELECT sub_system_id, COUNT(*) FROM minute_keys_by_partner WHERE partner_id = ? AND minute = ? GROUP BY sub_system_id",
				"INSERT INTO rollup_partner (partner_id, day, minute, sub_system_id, n) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
				id, minute, ttl)
		})
	}
	return fanOut(ctx, st.cfg.WriteConcurrency, fns)
}

func (st *Store) recountOne(ctx context.Context, count, put, id string, minute time.Time, ttl int) error {
	iter := st.s.Query(count, id, minute).WithContext(ctx).Iter()
	var group string
	var n int64
	type row struct {
		group string
		n     int64
	}
	var got []row
	for iter.Scan(&group, &n) {
		got = append(got, row{group, n})
	}
	if err := iter.Close(); err != nil {
		return err
	}
	day := dayOf(minute)
	for _, r := range got {
		if err := st.write(put, id, day, minute, r.group, r.n, r.n, ttl).ExecContext(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (st *Store) GetEvent(ctx context.Context, partnerID, id string) (event.Event, error) {
	var e event.Event
	var day int
	var ts time.Time
	bucket := int8(storage.Bucket(id))
	if err := st.s.Query("SELECT day, ts FROM event_ids WHERE partner_id = ? AND bucket = ? AND id = ?", partnerID, bucket, id).ScanContext(ctx, &day, &ts); err != nil {
		return e, notFound(err)
	}
	var body string
	if err := st.s.Query("SELECT body FROM events_by_partner WHERE partner_id = ? AND day = ? AND bucket = ? AND ts = ? AND id = ?",
		partnerID, day, bucket, ts, id).ScanContext(ctx, &body); err != nil {
		return e, notFound(err)
	}
	return e, json.Unmarshal([]byte(body), &e)
}

// days lists the UTC days that [from, to) touches, as yyyymmdd.
func days(from, to time.Time) []int {
	var out []int
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to); d = d.AddDate(0, 0, 1) {
		out = append(out, dayOf(d))
	}
	return out
}

// hourRange reads minute rollups of [from, to) widened to whole hours and sums them by hour and group.
func (st *Store) hourRange(ctx context.Context, stmt, id string, from, to time.Time) (map[time.Time]map[string]int64, error) {
	from = from.UTC().Truncate(time.Hour)
	if t := to.UTC().Truncate(time.Hour); !t.Equal(to.UTC()) {
		to = t.Add(time.Hour)
	}
	out := map[time.Time]map[string]int64{}
	type row struct {
		hour  time.Time
		group string
		n     int64
	}
	ds := days(from, to)
	results := make(chan []row, len(ds))
	fns := make([]func(context.Context) error, len(ds))
	for i, day := range ds {
		fns[i] = func(ctx context.Context) error {
			iter := st.s.Query(stmt, id, day, from, to).WithContext(ctx).PageSize(5000).Iter()
			var rows []row
			var minute time.Time
			var group string
			var n int64
			for iter.Scan(&minute, &group, &n) {
				rows = append(rows, row{minute.UTC().Truncate(time.Hour), group, n})
			}
			results <- rows
			return iter.Close()
		}
	}
	err := fanOut(ctx, 8, fns)
	close(results)
	for rows := range results {
		for _, r := range rows {
			if out[r.hour] == nil {
				out[r.hour] = map[string]int64{}
			}
			out[r.hour][r.group] += r.n
		}
	}
	return out, err
}

func sortedHours(m map[time.Time]map[string]int64) []time.Time {
	hs := make([]time.Time, 0, len(m))
	for h := range m {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Before(hs[j]) })
	return hs
}

func (st *Store) SubSystemCounts(ctx context.Context, subSystemID string, from, to time.Time) ([]storage.TypeCount, error) {
	m, err := st.hourRange(ctx, "SELECT minute, event_type, n FROM rollup_sub_system WHERE sub_system_id = ? AND day = ? AND minute >= ? AND minute < ?", subSystemID, from, to)
	if err != nil {
		return nil, err
	}
	out := []storage.TypeCount{}
	for _, h := range sortedHours(m) {
		for t, n := range m[h] {
			out = append(out, storage.TypeCount{Hour: h, EventType: t, Count: n})
		}
	}
	return out, nil
}

func (st *Store) PartnerCounts(ctx context.Context, partnerID string, from, to time.Time) ([]storage.SubSystemCount, error) {
	m, err := st.hourRange(ctx, "SELECT minute, sub_system_id, n FROM rollup_partner WHERE partner_id = ? AND day = ? AND minute >= ? AND minute < ?", partnerID, from, to)
	if err != nil {
		return nil, err
	}
	out := []storage.SubSystemCount{}
	for _, h := range sortedHours(m) {
		for s, n := range m[h] {
			out = append(out, storage.SubSystemCount{Hour: h, SubSystemID: s, Count: n})
		}
	}
	return out, nil
}
