package reporter_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
)

// The near cache against real Redis: a copy is sent while its generation
// holds and Redis holds its entry (not the entry's bytes: a spoilt entry
// still gets the copy sent); a bump (a late event) makes it stale on every
// reporter; a Redis restarted, whose generations read 0 again, takes the
// copies with their entries; a copy taken from another reporter's entry is
// never sent past that entry's lapse; and when Redis cannot be asked, no
// copy is sent.
func TestNearCache(t *testing.T) {
	f := newRedisFixture(t, "near")
	ctx := context.Background()
	cache, prefix, store, p, ss, at := f.cache, f.prefix, f.store, f.p, f.ss, f.at
	keys := func(pattern string) []string {
		t.Helper()
		ks, err := cache.Client().Keys(ctx, prefix+pattern).Result()
		if err != nil || len(ks) == 0 {
			t.Fatalf("no keys %s (%v)", pattern, err)
		}
		return ks
	}
	// spoilEntries overwrites every cached answer in Redis with bytes that
	// are no answer, its TTL kept: a cached answer sent after it is a copy.
	spoilEntries := func() {
		t.Helper()
		for _, k := range keys("report:*") {
			if err := cache.Client().SetArgs(ctx, k, "spoilt", redis.SetArgs{KeepTTL: true}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// restart deletes every key, generations too, as a Redis restarted
	// without persistence (docker-compose.yml) comes back.
	restart := func() {
		t.Helper()
		if err := cache.Client().Del(ctx, keys("*")...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	write := func(id string, ts time.Time) {
		t.Helper()
		if _, err := store.WriteEvents(ctx, []event.Event{{ID: id, PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: ts, UserID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	write("e1", at)
	ask := func(r *reporter.Service, q report.PartnerQuery) *report.PartnerReport {
		t.Helper()
		a, err := r.PartnerReport(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	closed := report.PartnerQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour)}

	r1 := reporter.New(store, zerolog.Nop()).WithCache(cache, time.Minute).WithNearCache(1 << 20)
	if a := ask(r1, closed); a.CachedAt != nil || a.TotalEvents != 1 {
		t.Fatalf("first: %+v", a)
	}
	second := ask(r1, closed)
	if second.CachedAt == nil {
		t.Fatal("second: not cached")
	}
	spoilEntries()
	if a := ask(r1, closed); a.CachedAt == nil || !a.CachedAt.Equal(*second.CachedAt) {
		t.Fatalf("with Redis's entry spoilt and the generation unchanged: cached at %v, want the copy (cached at %v)", a.CachedAt, second.CachedAt)
	}
	// A late event and its bump: no copy is sent.
	write("e2", at)
	if err := cache.Bump(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if a := ask(r1, closed); a.CachedAt != nil || a.TotalEvents != 2 {
		t.Fatalf("after the bump: cached at %v, %d events; want a fresh answer with the late event", a.CachedAt, a.TotalEvents)
	}

	// Another reporter takes r1's entry from Redis and keeps a copy; a
	// bump stales it there too.
	r2 := reporter.New(store, zerolog.Nop()).WithCache(cache, time.Minute).WithNearCache(1 << 20)
	if a := ask(r2, closed); a.CachedAt == nil || a.TotalEvents != 2 {
		t.Fatalf("r2, from r1's entry: %+v", a)
	}
	spoilEntries()
	if a := ask(r2, closed); a.CachedAt == nil || a.TotalEvents != 2 {
		t.Fatalf("r2, from its copy: %+v", a)
	}
	write("e3", at)
	if err := cache.Bump(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if a := ask(r2, closed); a.CachedAt != nil || a.TotalEvents != 3 {
		t.Fatalf("r2 after the bump: cached at %v, %d events", a.CachedAt, a.TotalEvents)
	}

	// Redis restarted after a bump no request followed: the generation
	// reads 0 again, as when the copies were computed, but their entries
	// are gone, and so are they.
	q0 := report.PartnerQuery{PartnerID: p.ID, From: closed.From, To: closed.To, TZ: "Asia/Tokyo"}
	restart() // every generation 0
	r4 := reporter.New(store, zerolog.Nop()).WithCache(cache, time.Minute).WithNearCache(1 << 20)
	ask(r4, q0)
	if a := ask(r4, q0); a.CachedAt == nil || a.TotalEvents != 3 {
		t.Fatalf("r4: %+v", a)
	}
	write("e4", at)
	if err := cache.Bump(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	restart()
	if a := ask(r4, q0); a.CachedAt != nil || a.TotalEvents != 4 {
		t.Fatalf("after Redis restarted: cached at %v, %d events; want a fresh answer with the late event", a.CachedAt, a.TotalEvents)
	}

	// A range reaching into the last hour is cached for the short TTL: a
	// copy r2 takes from r1's entry is never sent past cachedAt + TTL, and
	// r2 computes again once it has passed.
	const ttl = 400 * time.Millisecond
	r1 = reporter.New(store, zerolog.Nop()).WithCache(cache, ttl).WithNearCache(1 << 20)
	r2 = reporter.New(store, zerolog.Nop()).WithCache(cache, ttl).WithNearCache(1 << 20)
	now := time.Now().UTC()
	open := report.PartnerQuery{PartnerID: p.ID, From: now.Add(-2 * time.Hour), To: now.Add(time.Hour)}
	ask(r1, open)
	if a := ask(r2, open); a.CachedAt == nil {
		t.Fatal("r2 computed, not taking r1's entry")
	}
	spoilEntries() // every cached answer below is r2's copy
	for deadline := time.Now().Add(10 * time.Second); ; {
		asked := time.Now()
		a := ask(r2, open)
		if a.CachedAt == nil {
			break
		}
		if !asked.Before(a.CachedAt.Add(ttl)) {
			t.Fatalf("a copy cached at %v sent when asked at %v, past its TTL of %v", a.CachedAt, asked, ttl)
		}
		if time.Now().After(deadline) {
			t.Fatal("r2 still sends a copy 10 s on")
		}
	}

	// Redis down: no copy is sent, the answer is computed. (A sub-system's
	// report: its generation was never bumped, so a failed read's 0 would
	// match the copy's.)
	down := &failing{Cache: cache}
	r3 := reporter.New(store, zerolog.Nop()).WithCache(down, time.Minute).WithNearCache(1 << 20)
	sq := report.SubSystemQuery{SubSystemID: ss.ID, From: closed.From, To: closed.To}
	askSub := func() *report.SubSystemReport {
		t.Helper()
		a, err := r3.SubSystemReport(ctx, sq)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	askSub()
	if a := askSub(); a.CachedAt == nil {
		t.Fatal("r3: no copy to test with")
	}
	down.fail = errors.New("redis is down")
	if a := askSub(); a.CachedAt != nil {
		t.Fatalf("with Redis down, a copy cached at %v was sent", a.CachedAt)
	}
}

// failing is a Redis cache whose reads fail when told.
type failing struct {
	*rcache.Cache
	fail error
}

func (f *failing) Held(ctx context.Context, id, key string) (int64, time.Duration, error) {
	if f.fail != nil {
		return 0, 0, f.fail
	}
	return f.Cache.Held(ctx, id, key)
}

func (f *failing) GetGenerational(ctx context.Context, id, key string) (int64, []byte, bool, error) {
	if f.fail != nil {
		return 0, nil, false, f.fail
	}
	return f.Cache.GetGenerational(ctx, id, key)
}

// With a check window (WithNearCheckEvery), a copy found current in Redis
// is sent without asking again until the window ends, and only then: a
// bump, or Redis down, reaches it when the window ends, never later; a
// copy never found current (stored anew) is asked about first; one hit in
// the window's last quarter asks ahead, renewing the window or finding the
// bump.
func TestNearCacheCheckWindow(t *testing.T) {
	f := newRedisFixture(t, "window")
	ctx := context.Background()
	cache, store, p, ss, at := f.cache, f.store, f.p, f.ss, f.at
	events := 0
	lateEvent := func() {
		t.Helper()
		events++
		id := fmt.Sprintf("e%d", events)
		if _, err := store.WriteEvents(ctx, []event.Event{{ID: id, PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: at, UserID: id}}); err != nil {
			t.Fatal(err)
		}
		if err := cache.Bump(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	lateEvent()

	const window = time.Minute
	down := &failing{Cache: cache}
	r := reporter.New(store, zerolog.Nop()).WithCache(down, time.Minute).WithNearCache(1 << 20).WithNearCheckEvery(window)
	var mu sync.Mutex
	now := time.Now()
	defer reporter.SetClock(r, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })()
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	q := report.PartnerQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour)}
	ask := func(what string, wantCopy bool, wantEvents int64) {
		t.Helper()
		a, err := r.PartnerReport(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if (a.CachedAt != nil) != wantCopy || a.TotalEvents != wantEvents {
			t.Fatalf("%s: cached at %v, %d events; want cached %v, %d events", what, a.CachedAt, a.TotalEvents, wantCopy, wantEvents)
		}
	}
	ask("first", false, 1)
	ask("second (the copy, found current)", true, 1)

	lateEvent()
	advance(window / 2)
	ask("a bump within the window", true, 1)
	advance(window / 2)
	ask("a bump, the window ended", false, 2)

	// The copy stored with that answer was never found current: its first
	// hit asks. In its window's last quarter one hit asks ahead and renews
	// it: past the first window's end, the copy is sent with Redis down.
	ask("the new copy, checked", true, 2)
	advance(window * 3 / 4)
	ask("the copy, asked ahead", true, 2)
	advance(window / 2)
	down.fail = errors.New("redis is down")
	ask("the copy in its renewed window, Redis down", true, 2)
	advance(window / 2)
	ask("Redis down, the renewed window ended", false, 2)
	down.fail = nil
	ask("Redis back: the copy, checked again", true, 2)

	// A bump seen ahead of the window's end.
	lateEvent()
	advance(window * 3 / 4)
	ask("a bump, seen by the hit asking ahead", false, 3)
}
