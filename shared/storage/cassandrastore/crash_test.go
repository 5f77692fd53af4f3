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
			Timestamp: ts.Add(time.Duration(i) * time.Second), Metadata: []byte(`{"i":1}`)}
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
		cs, err := st.SubSystemCounts(ctx, s, ts.Add(-time.Hour), ts.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			bySub += c.Count
		}
	}
	pc, err := st.PartnerCounts(ctx, p, ts.Add(-time.Hour), ts.Add(2*time.Hour))
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
	keys := []foldKey{{"p", p, dayOf(ts)}, {"s", subs[0], dayOf(ts)}, {"s", subs[1], dayOf(ts)}}
	for _, k := range keys {
		if err := st.fold(ctx, k, future); err != nil {
			t.Fatal(err)
		}
	}
	wantCounts(t, st, p, subs, ts, 350)
	var rows int
	if err := st.s.Query("SELECT COUNT(*) FROM counts_by_partner WHERE partner_id = ? AND day = ? AND batch_id > ? ALLOW FILTERING",
		p, dayOf(ts), totalBatch).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("%d batch rows left after the fold", rows)
	}
	// Redeliver everything: the crashed batch's groups are completed from
	// their manifests, the folded ones are rewritten and stay folded.
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 400)
	for _, k := range keys {
		if err := st.fold(ctx, k, future); err != nil {
			t.Fatal(err)
		}
	}
	wantCounts(t, st, p, subs, ts, 400)
	// The crashed batch's rows were written by redelivery (incomplete) and
	// are never folded: they are still there, and still counted once.
	if err := st.s.Query("SELECT COUNT(*) FROM counts_by_partner WHERE partner_id = ? AND day = ? AND batch_id = ? ALLOW FILTERING",
		p, dayOf(ts), crashed).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows == 0 {
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
				k := foldKey{"s", subs[0], dayOf(ts)}
				if w%2 == 1 {
					k = foldKey{"p", p, dayOf(ts)}
				}
				done <- st.fold(ctx, k, future)
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
