package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
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

// pool lends every test of the package its keyspace, emptied between
// tests; TestMain drops them when all have run.
var pool *KeyspacePool

func TestMain(m *testing.M) {
	var hosts []string
	if h := os.Getenv("VT_CASSANDRA_HOSTS"); h != "" {
		hosts = strings.Split(h, ",")
	}
	os.Exit(WithPool(hosts, "vt_crash", func(p *KeyspacePool) int {
		pool = p
		return m.Run()
	}))
}

func openStore(t testing.TB) *Store { return openStoreWith(t, nil) }

// openStoreWith opens a store on a keyspace of its own, migrated and
// empty, its configuration changed by set.
func openStoreWith(t testing.TB, set func(*Config)) *Store {
	t.Helper()
	if pool == nil {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and sets it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Keyspace = pool.hosts, name
	if set != nil {
		set(&cfg)
	}
	st, err := Open(cfg)
	if err != nil {
		pool.Put(ctx, name)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := pool.Put(ctx, name); err != nil {
			t.Logf("keyspace %s: %v", name, err)
		}
	})
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
	if err := st.notePartners(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
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

func counts(st *Store, p string, subs []string, ts time.Time) (bySub, byPartner int64, err error) {
	ctx := context.Background()
	for _, s := range subs {
		cs, err := storage.SubSystemCounts(ctx, st, s, ts.Add(-time.Hour), ts.Add(2*time.Hour))
		if err != nil {
			return 0, 0, err
		}
		for _, c := range cs {
			bySub += c.Count
		}
	}
	pc, err := storage.PartnerCounts(ctx, st, p, ts.Add(-time.Hour), ts.Add(2*time.Hour))
	if err != nil {
		return 0, 0, err
	}
	for _, c := range pc {
		byPartner += c.Count
	}
	return bySub, byPartner, nil
}

func wantCounts(t *testing.T, st *Store, p string, subs []string, ts time.Time, want int64) {
	t.Helper()
	if err := checkCounts(st, p, subs, ts, want); err != nil {
		t.Fatal(err)
	}
}

// checkCounts checks the counts and, at every resolution, the users of
// batchOf's events (users i%37).
func checkCounts(st *Store, p string, subs []string, ts time.Time, want int64) error {
	a, b, err := counts(st, p, subs, ts)
	if err != nil {
		return err
	}
	if a != want || b != want {
		return fmt.Errorf("counted %d by sub-system, %d by partner; want %d", a, b, want)
	}
	// The partner's users, and those of one type: the partner's, and the
	// first sub-system's (the users of each type share their key's
	// partition and conditional batches).
	evs := batchOf(p, subs, int(want), ts)
	for _, c := range []struct {
		sc    storage.UserScope
		key   string
		match func(e *event.Event) bool
	}{
		{storage.PartnerUsers, p, func(*event.Event) bool { return true }},
		{storage.PartnerTypeUsers, storage.TypedKey(p, "t0"), func(e *event.Event) bool { return e.EventType == "t0" }},
		{storage.SubSystemTypeUsers, storage.TypedKey(subs[0], "t1"), func(e *event.Event) bool { return e.EventType == "t1" && e.SubSystemID == subs[0] }},
	} {
		var exact hll.Sketch // the sketch of exactly those users
		for i := range evs {
			if c.match(&evs[i]) {
				exact.Add(storage.UserOf(&evs[i]))
			}
		}
		for _, res := range storage.Resolutions {
			us, err := storage.UserSlots(context.Background(), st, storage.UsersQuery{Scope: c.sc, Key: c.key, Res: res,
				From: ts.Add(-24 * time.Hour), To: ts.Add(24 * time.Hour)})
			if err != nil {
				return err
			}
			var sk hll.Sketch
			for _, u := range us {
				if err := sk.MergeBinary(u.Sketch); err != nil {
					return err
				}
			}
			if string(sk.Append(nil)) != string(exact.Append(nil)) {
				return fmt.Errorf("scope %d %s: %d users, want %d", c.sc, res, sk.Estimate(), exact.Estimate())
			}
		}
	}
	return nil
}

// An event counts from its claim (I2); its rows come with the redelivery.
func TestCrashAfterClaim(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-30 * time.Minute)
	evs := batchOf(p, subs, 300, ts)
	claimOnly(t, st, evs)
	wantCounts(t, st, p, subs, ts, 300) // counted with the claims
	if _, err := st.GetEvent(context.Background(), p, evs[0].ID); err == nil {
		t.Fatal("an event stored by a batch that stopped after its claims")
	}
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
	// Again, and folded: nothing changes.
	if _, err := st.WriteEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	foldNow(t, st)
	wantCounts(t, st, p, subs, ts, 300)
}

// A batch whose last claim round failed is retried whole under a new batch
// id: the rounds that did commit keep their events.
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

func foldNow(t *testing.T, st *Store) {
	t.Helper()
	if err := st.FoldPending(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// manifestsAbove counts a partner's manifests above applied.
func manifestsAbove(t *testing.T, st *Store, p string) int {
	t.Helper()
	n := 0
	for _, m := range manifestsByBucket(t, st, p) {
		n += m
	}
	return n
}

// A fold moves every manifest into the totals; a redelivery after it adds
// nothing.
func TestFoldThenRedeliver(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 400, ts)
	ctx := context.Background()
	if _, err := st.WriteEvents(ctx, evs[:250]); err != nil {
		t.Fatal(err)
	}
	claimOnly(t, st, evs[250:300]) // a batch that stopped after its claims
	if _, err := st.WriteEvents(ctx, evs[300:]); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 400)
	if n := manifestsAbove(t, st, p); n == 0 {
		t.Fatal("no manifest waiting before the fold")
	}
	foldNow(t, st)
	if n := manifestsAbove(t, st, p); n != 0 {
		t.Fatalf("%d manifests above applied after the fold", n)
	}
	wantCounts(t, st, p, subs, ts, 400)
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	foldNow(t, st)
	wantCounts(t, st, p, subs, ts, 400)
}

// Folders at once, over and over, while batches keep coming: each row adds
// each manifest once (I4).
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
		done := make(chan error, 4)
		for range 4 {
			go func() { done <- st.FoldPartner(ctx, p, time.Now()) }()
		}
		for range 4 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		wantCounts(t, st, p, subs, ts, int64(i+50))
	}
}

// A folder that stops after adding some rows and before moving applied
// leaves rows that hold manifests above applied: readers skip them there
// (through), and the next fold does not add them again.
func TestFoldStopsHalfWay(t *testing.T) {
	st := openStore(t)
	st.folder.close() // the test's folds only: the hook counts their parts
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 300, ts)
	ctx := context.Background()
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	stopped := errors.New("stopped")
	parts := 0
	st.foldHook = func(stage string) error {
		if stage == "part" {
			if parts++; parts == 5 {
				return stopped
			}
		}
		return nil
	}
	if err := st.FoldPartner(ctx, p, time.Now()); !errors.Is(err, stopped) {
		t.Fatalf("fold: %v, want it stopped half-way", err)
	}
	st.foldHook = nil
	if n := manifestsAbove(t, st, p); n == 0 {
		t.Fatal("applied moved although the fold stopped")
	}
	wantCounts(t, st, p, subs, ts, 300)
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 300)
}

// Reports read while a fold runs are exact at every step of it (I5).
func TestReadDuringFold(t *testing.T) {
	st := openStore(t)
	st.folder.close() // the test's fold only: the hook reads at its stages
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 300, ts)
	ctx := context.Background()
	for i := 0; i < 300; i += 100 {
		if _, err := st.WriteEvents(ctx, evs[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	stages := map[string]int{}
	st.foldHook = func(stage string) error {
		stages[stage]++
		if err := checkCounts(st, p, subs, ts, 300); err != nil {
			return fmt.Errorf("read during the fold, after %q #%d: %w", stage, stages[stage], err)
		}
		return nil
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.foldHook = nil
	for _, s := range []string{"sealed", "part", "applied"} {
		if stages[s] == 0 {
			t.Fatalf("the fold never reached %q: %v", s, stages)
		}
	}
}

// A claim round whose manifest time a folder has already sealed is
// refused and goes again with a later time (I3): nothing is lost, however
// far the clocks are apart.
func TestClaimAfterSeal(t *testing.T) {
	st := openStore(t)
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 200, ts)
	ctx := context.Background()
	if _, err := st.WriteEvents(ctx, evs[:100]); err != nil {
		t.Fatal(err)
	}
	// A folder whose clock is an hour ahead seals every partition.
	ahead := time.Now().Add(time.Hour)
	if err := st.FoldPartner(ctx, p, ahead); err != nil {
		t.Fatal(err)
	}
	for b := range ClaimBuckets {
		if _, err := st.seal(ctx, claimKey{p, int16(b)}, ahead.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.WriteEvents(ctx, evs[100:]); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, st, p, subs, ts, 200)
	if err := st.FoldPartner(ctx, p, ahead.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := manifestsAbove(t, st, p); n != 0 {
		t.Fatalf("%d manifests above applied after the fold", n)
	}
	wantCounts(t, st, p, subs, ts, 200)
}

// A sub-system whose events name two partners (a publisher on the bus may
// do that) is counted from both partners' manifests, whichever is folded
// first: a row's through tells the partners' claim partitions apart.
func TestSubSystemOfTwoPartners(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	pa, pb, sub := tenant.NewID(), tenant.NewID(), tenant.NewID()
	ts := time.Now().UTC().Add(-10 * time.Minute)
	b := batchOf(pb, []string{sub}, 100, ts)
	a := batchOf(pa, []string{sub}, 100, ts)
	if _, err := st.WriteEvents(ctx, b); err != nil { // older manifests
		t.Fatal(err)
	}
	if _, err := st.WriteEvents(ctx, a); err != nil {
		t.Fatal(err)
	}
	total := func() int64 {
		t.Helper()
		cs, err := storage.SubSystemCounts(ctx, st, sub, ts.Add(-time.Hour), ts.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, c := range cs {
			n += c.Count
		}
		return n
	}
	if n := total(); n != 200 {
		t.Fatalf("before folds: %d, want 200", n)
	}
	if err := st.FoldPartner(ctx, pa, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := total(); n != 200 {
		t.Fatalf("one partner folded: %d, want 200", n)
	}
	if err := st.FoldPartner(ctx, pb, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := total(); n != 200 {
		t.Fatalf("both folded: %d, want 200", n)
	}
}

// One process at a time folds a partner: a second one that writes for it
// leaves the folding to the lease holder, and takes over once the lease
// lapses.
func TestFoldLease(t *testing.T) {
	st1 := openStore(t)
	st2, err := Open(st1.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	// Only the folds this test runs.
	st1.folder.close()
	st2.folder.close()
	ctx := context.Background()
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	evs := batchOf(p, subs, 300, ts)
	write := func(st *Store, evs []event.Event) {
		t.Helper()
		if _, err := st.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	fold := func(st *Store) {
		t.Helper()
		if err := st.folder.fold(ctx, []string{p}, time.Now(), true); err != nil {
			t.Fatal(err)
		}
	}
	write(st1, evs[:100])
	fold(st1) // takes the lease
	if n := manifestsAbove(t, st1, p); n != 0 {
		t.Fatalf("the first folder left %d manifests", n)
	}
	write(st2, evs[100:200])
	fold(st2) // not its lease: leaves them
	if n := manifestsAbove(t, st1, p); n == 0 {
		t.Fatal("a second process folded a partner whose lease another holds")
	}
	fold(st1)
	if n := manifestsAbove(t, st1, p); n != 0 {
		t.Fatalf("the holder left %d manifests", n)
	}
	// The holder stops; its lease lapses (here: removed).
	if err := st1.s.Query("DELETE FROM fold_leases WHERE partner_id = ?", p).Exec(); err != nil {
		t.Fatal(err)
	}
	write(st2, evs[200:])
	fold(st2)
	if n := manifestsAbove(t, st1, p); n != 0 {
		t.Fatalf("after the lease lapsed, %d manifests left", n)
	}
	wantCounts(t, st2, p, subs, ts, 300)
}
