package cassandrastore

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// These tests stop a batch between the steps of WriteEvents, as a SIGKILL of
// the worker would, and redeliver it: the invariants of events.go hold at
// every crash point, and folding never counts twice.

var ks atomic.Int32

func openStore(t *testing.T) *Store {
	t.Helper()
	h := os.Getenv("VT_CASSANDRA_HOSTS")
	if h == "" {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and sets it")
	}
	hs := strings.Split(h, ",")
	name := fmt.Sprintf("vt_crash_%d_%d", os.Getpid(), ks.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Migrate(ctx, hs, name, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Keyspace = hs, name
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); DropKeyspace(context.Background(), hs, name) })
	return st
}

func batchOf(p string, subs []string, n int, ts time.Time) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: subs[i%len(subs)], EventType: fmt.Sprint("t", i%3),
			Timestamp: ts.Add(time.Duration(i) * time.Second), Metadata: []byte(`{"i":1}`),
			UserID: fmt.Sprint("u", i%37)}
	}
	return evs
}

// claimOnly runs the claim step of a batch and stops, as a crash would.
func claimOnly(t *testing.T, st *Store, evs []event.Event) gocql.UUID {
	t.Helper()
	batch := gocql.TimeUUID()
	groups := map[claimKey][]int{}
	for i := range evs {
		ck := claimKey{evs[i].PartnerID, claimBucket(evs[i].ID)}
		groups[ck] = append(groups[ck], i)
	}
	for ck, idx := range groups {
		if _, err := st.claimEvents(context.Background(), batch, int(ck.bucket)*1024, ck, evs, idx); err != nil {
			t.Fatal(err)
		}
	}
	return batch
}

func counts(t *testing.T, st *Store, p string, subs []string, ts time.Time) (bySub, byPartner int64) {
	t.Helper()
	ctx := context.Background()
	for _, s := range subs {
		cs, err := storage.SubSystemCounts(ctx, st, s, ts.Add(-time.Hour), ts.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			bySub += c.Count
		}
	}
	pc, err := storage.PartnerCounts(ctx, st, p, ts.Add(-time.Hour), ts.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pc {
		byPartner += c.Count
	}
	return bySub, byPartner
}

func wantCounts(t *testing.T, st *Store, p string, subs []string, ts time.Time, want int64) {
	t.Helper()
	if a, b := counts(t, st, p, subs, ts); a != want || b != want {
		t.Fatalf("counted %d by sub-system, %d by partner; want %d", a, b, want)
	}
	// Every resolution sees the same users (batchOf: i%37).
	for _, res := range storage.Resolutions {
		us, err := storage.UserSlots(context.Background(), st, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: res,
			From: ts.Add(-24 * time.Hour), To: ts.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		var sk hll.Sketch
		for _, u := range us {
			if err := sk.MergeBinary(u.Sketch); err != nil {
				t.Fatal(err)
			}
		}
		var exact hll.Sketch // the sketch of exactly those users
		for i := range min(want, 37) {
			exact.Add(storage.UserOf(&event.Event{UserID: fmt.Sprint("u", i)}))
		}
		if sk.Estimate() != exact.Estimate() {
			t.Fatalf("%s: %d users, want %d", res, sk.Estimate(), exact.Estimate())
		}
	}
}

func TestCrashAfterClaim(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-30 * time.Minute)
	evs := batchOf(p, subs, 300, ts)
	claimOnly(t, st, evs)
	wantCounts(t, st, p, subs, ts, 0) // claimed, nothing else yet
	// Redelivered, split over two workers at once.
	done := make(chan error, 2)
	go func() { _, err := st.WriteEvents(context.Background(), evs[:200]); done <- err }()
	go func() { _, err := st.WriteEvents(context.Background(), evs[150:]); done <- err }()
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	wantCounts(t, st, p, subs, ts, 300)
	for _, i := range []int{0, 149, 299} {
		if _, err := st.GetEvent(context.Background(), p, evs[i].ID); err != nil {
			t.Fatalf("event %d not stored after redelivery: %v", i, err)
		}
	}
	// Again: nothing changes.
	if _, err := st.WriteEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 300)
}

// A batch whose last claim round failed is retried whole under a new batch
// id: the rounds that did commit are completed from their manifests.
func TestRetryAfterPartialClaim(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-20 * time.Minute)
	evs := batchOf(p, subs, 200, ts)
	claimOnly(t, st, evs[:77]) // some groups committed, then the write failed
	r, err := st.WriteEvents(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	if r.Written != 123 {
		t.Fatalf("written %d, want the 123 not claimed before", r.Written)
	}
	wantCounts(t, st, p, subs, ts, 200)
}

// Folding replaces complete rows by totals; a redelivery after the fold,
// which rewrites the folded batch's rows, does not bring them back.
func TestFoldThenRedeliver(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 400, ts)
	ctx := context.Background()
	if _, err := st.WriteEvents(ctx, evs[:250]); err != nil {
		t.Fatal(err)
	}
	crashed := claimOnly(t, st, evs[250:300]) // a batch that stopped after its claims
	if _, err := st.WriteEvents(ctx, evs[300:]); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 350)
	// Fold everything written so far (cutoff in the future).
	future := time.Now().Add(time.Hour)
	keys := partitions(p, subs, ts)
	foldAll(t, st, keys, future)
	wantCounts(t, st, p, subs, ts, 350)
	if rows := countBatchRows(t, st, p, ts, nil); rows != 0 {
		t.Fatalf("%d batch rows left after the fold", rows)
	}
	// Redeliver everything: the crashed batch's groups are completed from
	// their manifests, the folded ones are rewritten and stay folded.
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 400)
	foldAll(t, st, keys, future)
	wantCounts(t, st, p, subs, ts, 400)
	// The crashed batch's rows were written by redelivery (incomplete) and
	// are never folded: they are still there, and still counted once.
	if rows := countBatchRows(t, st, p, ts, &crashed); rows == 0 {
		t.Fatal("the crashed batch's counts are missing")
	}
}

// Two folders at once: each cell's rows are folded by one of them only.
func TestConcurrentFolds(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 600, ts)
	ctx := context.Background()
	for i := 0; i < 600; i += 50 {
		if _, err := st.WriteEvents(ctx, evs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	future := time.Now().Add(time.Hour)
	for round := 0; round < 3; round++ {
		done := make(chan error, 4)
		for w := 0; w < 4; w++ {
			go func() {
				var err error
				for _, k := range partitions(p, subs, ts) {
					lo, hi := span(k)
					if _, e := st.fold(ctx, k, lo, hi, future); e != nil {
						err = e
					}
				}
				done <- err
			}()
		}
		for w := 0; w < 4; w++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		wantCounts(t, st, p, subs, ts, 600)
	}
}

// partitions are the rollup and sketch partitions of a partner's
// sub-systems' events around ts, at every resolution.
func partitions(p string, subs []string, ts time.Time) []foldKey {
	var out []foldKey
	for _, res := range storage.Resolutions {
		for _, t := range []time.Time{ts.Add(-time.Hour), ts, ts.Add(time.Hour)} {
			per := periodOf(res, res.Slot(t))
			for _, s := range subs {
				out = append(out, foldKey{'r', int8(storage.SubSystemTypes), s, res, per}, foldKey{'u', int8(storage.SubSystemUsers), s, res, per})
			}
			out = append(out, foldKey{'r', int8(storage.PartnerSubSystems), p, res, per}, foldKey{'r', int8(storage.PartnerTypes), p, res, per},
				foldKey{'u', int8(storage.PartnerUsers), p, res, per})
		}
	}
	return out
}

// span is every slot of a partition.
func span(k foldKey) (lo, hi time.Time) {
	var start time.Time
	switch k.res {
	case storage.Minute, storage.QuarterHour:
		start = time.Date(k.period/10000, time.Month(k.period/100%100), k.period%100, 0, 0, 0, 0, time.UTC)
	case storage.Hour:
		start = time.Date(k.period/100, time.Month(k.period%100), 1, 0, 0, 0, 0, time.UTC)
	default:
		start = time.Date(k.period, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return start, nextPeriod(k.res, start)
}

func foldAll(t *testing.T, st *Store, keys []foldKey, cutoff time.Time) {
	t.Helper()
	for _, k := range keys {
		lo, hi := span(k)
		if _, err := st.fold(context.Background(), k, lo, hi, cutoff); err != nil {
			t.Fatal(err)
		}
	}
}

// countBatchRows counts the batch rows (of one batch, if given) of the
// partner's minute counts around ts.
func countBatchRows(t *testing.T, st *Store, p string, ts time.Time, batch *gocql.UUID) int {
	t.Helper()
	total := 0
	for _, k := range partitions(p, nil, ts) {
		if k.kind != 'r' || k.res != storage.Minute {
			continue
		}
		var n int
		q := st.s.Query("SELECT COUNT(*) FROM rollups WHERE rollup = ? AND key = ? AND res = ? AND period = ? AND batch_id > ? ALLOW FILTERING",
			k.a, k.key, int8(k.res), k.period, totalBatch)
		if batch != nil {
			q = st.s.Query("SELECT COUNT(*) FROM rollups WHERE rollup = ? AND key = ? AND res = ? AND period = ? AND batch_id = ? ALLOW FILTERING",
				k.a, k.key, int8(k.res), k.period, *batch)
		}
		if err := q.Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// A slot whose rows run over a page boundary is summed from one read of
// its own: a fold committing between the pages (total on the first page,
// the rows it deleted on the next) cannot make a report undercount. Pages
// of 3 rows cut every slot of 20 batch rows, and the fold runs exactly
// between the first two pages.
func TestCountsAcrossPagesAndFolds(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Minute)
	var evs []event.Event
	for i := range 400 {
		evs = append(evs, event.Event{ID: fmt.Sprint("pg", i), PartnerID: p, SubSystemID: subs[0], EventType: "t",
			Timestamp: ts.Add(time.Duration(i%3) * time.Minute), UserID: fmt.Sprint("u", i%37)})
	}
	for i := 0; i < len(evs); i += 20 { // 20 batches: 20 rows per slot
		if _, err := st.WriteEvents(ctx, evs[i:i+20]); err != nil {
			t.Fatal(err)
		}
	}
	// A first fold makes a total row per slot; more batches of the same
	// events' duplicates add nothing, so write 20 more new events a slot.
	keys := []foldKey{{'r', int8(storage.PartnerSubSystems), p, storage.Minute, periodOf(storage.Minute, ts)}}
	foldAll(t, st, keys, time.Now().Add(time.Hour))
	var more []event.Event
	for i := range 60 {
		more = append(more, event.Event{ID: fmt.Sprint("pg-more", i), PartnerID: p, SubSystemID: subs[0], EventType: "t",
			Timestamp: ts.Add(time.Duration(i%3) * time.Minute), UserID: fmt.Sprint("u", i%37)})
	}
	for i := 0; i < len(more); i += 3 { // 20 batches of one event a slot
		if _, err := st.WriteEvents(ctx, more[i:i+3]); err != nil {
			t.Fatal(err)
		}
	}
	folded := false
	st.countsPage, st.pageTurn = 3, func() {
		if !folded {
			folded = true
			foldAll(t, st, keys, time.Now().Add(time.Hour))
		}
	}
	slots, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerSubSystems, Key: p, Res: storage.Minute,
		From: ts.Add(-time.Hour), To: ts.Add(time.Hour)})
	st.countsPage, st.pageTurn = 5000, nil
	if err != nil {
		t.Fatal(err)
	}
	if !folded {
		t.Fatal("the read never turned a page")
	}
	var sum int64
	for _, s := range slots {
		sum += s.Total
	}
	if sum != 460 {
		t.Fatalf("a fold between two pages: summed %d, want 460", sum)
	}
	wantCounts(t, st, p, subs, ts, 460)
}
