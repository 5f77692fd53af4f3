package cassandrastore

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Review: at most sealsAtOnce seals run (the others are dropped, not
// queued), Close waits for those under way (they apply), and no seal
// starts after Close.
func TestReviewSealLifecycle(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	var days []time.Time
	var evs []event.Event
	for i := range 4 {
		d := today.AddDate(0, 0, -2-i)
		days = append(days, d)
		evs = append(evs, event.Event{ID: d.String(), PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: d.Add(3 * time.Hour)})
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	pt := func(d time.Time) part {
		return part{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, d)}
	}
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	var hooks atomic.Int32
	st.sealHook = func() {
		hooks.Add(1)
		started <- struct{}{}
		<-release
	}
	for _, d := range days {
		st.sealLater(pt(d), packSlot(d))
		st.sealLater(pt(d), packSlot(d)) // the same pack again: busy or dropped
	}
	deadline := time.After(30 * time.Second)
	for range sealsAtOnce {
		select {
		case <-started:
		case <-deadline:
			t.Fatal("the seals did not start")
		}
	}
	if n := len(st.sealSlots); n != sealsAtOnce {
		t.Fatalf("%d seals under way, want %d", n, sealsAtOnce)
	}
	closed := make(chan struct{})
	go func() { st.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned with seals under way")
	case <-time.After(500 * time.Millisecond): // a bound on a thing that must not happen
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("Close did not return")
	}
	if n := hooks.Load(); n != sealsAtOnce {
		t.Fatalf("%d seals ran, want %d", n, sealsAtOnce)
	}
	// After Close: nothing starts.
	st.sealHook = func() { t.Error("a seal after Close") }
	st.sealLater(pt(days[3]), packSlot(days[3]))
	if n := len(st.sealSlots); n != 0 {
		t.Fatalf("%d seals under way after Close", n)
	}
	// The two that ran applied before the session closed.
	st2, err := Open(st.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	st2.folder.close()
	sealed := 0
	for _, d := range days {
		m, e, _, has := packRow(t, st2, pt(d), packSlot(d))
		switch {
		case has && len(m) == 0 && e.has == 1<<3:
			sealed++
		case !has && len(m) == 1:
		default:
			t.Fatalf("%v: map %v, seal %v %+v", d, m, has, e)
		}
	}
	if sealed != sealsAtOnce {
		t.Fatalf("%d packs sealed, want %d", sealed, sealsAtOnce)
	}
}

// Review: a new keyspace seals from the start; one upgraded with data gets
// the mark a day or more ahead, and its readers leave the maps alone until
// then; the pool's reset brings the keyspace back to a new one's mark, with
// its schema (the column sealed) as a new keyspace's.
func TestReviewSealMarkOnUpgrade(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	if pool == nil {
		t.Skip("VT_CASSANDRA_HOSTS is not set")
	}
	ctx := context.Background()
	ks, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Keyspace = pool.hosts, ks
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !st.sealSince.Equal(time.Unix(0, 0)) {
		t.Fatalf("a new keyspace seals from %v, want the start", st.sealSince)
	}
	st.folder.close()
	p, sub := tenant.NewID(), tenant.NewID()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "a", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: day.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The keyspace as a release before this one left it.
	if err := st.s.Query("DELETE FROM schema_migrations WHERE version = ?", sealVersion).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := st.s.Query("DELETE FROM layout WHERE name = ?", sealName).Exec(); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := Migrate(ctx, cfg.Hosts, ks, pool.replication); err != nil {
		t.Fatal(err)
	}
	st.Close()
	up, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	up.folder.close()
	if up.sealSince.Before(before.Add(sinceMargin)) {
		t.Fatalf("upgraded with data: seals from %v, want past %v", up.sealSince, before.Add(sinceMargin))
	}
	pt := part{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, day)}
	if _, err := up.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: day, To: day.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	up.seals.Wait()
	if m, _, _, has := packRow(t, up, pt, packSlot(day)); has || len(m) != 1 {
		t.Fatalf("before the mark: map %v, seal %v; want the map alone", m, has)
	}
	up.Close()
	if err := pool.Put(ctx, ks); err != nil {
		t.Fatal(err)
	}
	pool.mu.Lock()
	kept := slices.Contains(pool.free, ks)
	pool.mu.Unlock()
	if !kept {
		t.Fatal("the pool dropped the keyspace on reset")
	}
	again, err := pool.Get(ctx) // the last given back
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Put(ctx, again)
	cfg.Keyspace = again
	fresh, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if again != ks || !fresh.sealSince.Equal(time.Unix(0, 0)) {
		t.Fatalf("after the reset: keyspace %s (gave back %s) seals from %v, want the start", again, ks, fresh.sealSince)
	}
}
