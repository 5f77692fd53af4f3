package reporter_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/tenant"
)

// redisFixture is what the tests of the Redis cache share: a cache under
// a prefix of its own, a Pebble store holding a partner and its
// sub-system, and an instant three hours back (the closed past).
type redisFixture struct {
	cache  *rcache.Cache
	prefix string
	store  *pebblestore.Store
	p      tenant.Partner
	ss     tenant.SubSystem
	at     time.Time
}

// newRedisFixture skips the test when no Redis is set (`make test` sets
// one); name keeps its keys apart from other tests'.
func newRedisFixture(t *testing.T, name string) *redisFixture {
	t.Helper()
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	ctx := context.Background()
	f := &redisFixture{prefix: fmt.Sprintf("test-%s-%d-%d:", name, os.Getpid(), time.Now().UnixNano())}
	var err error
	if f.cache, err = rcache.Open(ctx, url, f.prefix); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cache.Close() })
	if f.store, err = pebblestore.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	f.p = tenant.Partner{ID: tenant.NewID(), Code: name, Name: name, Status: tenant.Active}
	f.ss = tenant.SubSystem{ID: tenant.NewID(), PartnerID: f.p.ID, Code: "web", Name: "Web", Status: tenant.Active}
	if err := f.store.CreatePartner(ctx, f.p); err != nil {
		t.Fatal(err)
	}
	if err := f.store.CreateSubSystem(ctx, f.ss); err != nil {
		t.Fatal(err)
	}
	f.at = time.Now().UTC().Add(-3 * time.Hour)
	return f
}

// TestRedisCache: answers cached in Redis (as in production) come back
// with cachedAt and the same figures; a fresh answer has none; another
// parameter is another entry.
func TestRedisCache(t *testing.T) {
	f := newRedisFixture(t, "c")
	ctx := context.Background()
	cache, store, p, ss, at := f.cache, f.store, f.p, f.ss, f.at
	if _, err := store.WriteEvents(ctx, []event.Event{{ID: "e1", PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: at, UserID: "u"}}); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour)}
	first, err := r.PartnerReport(ctx, q)
	if err != nil || first.CachedAt != nil || first.TotalEvents != 1 {
		t.Fatalf("first: %+v %v", first, err)
	}
	second, err := r.PartnerReport(ctx, q)
	if err != nil || second.CachedAt == nil || second.TotalEvents != 1 || *second.UniqueUsers != 1 || len(second.TimeSeries) != len(first.TimeSeries) {
		t.Fatalf("second: %+v %v", second, err)
	}
	// A late event, and the generation the workers bump for it: the next
	// answer counts it, and is then cached at the new generation.
	if _, err := store.WriteEvents(ctx, []event.Event{{ID: "e2", PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: at, UserID: "v"}}); err != nil {
		t.Fatal(err)
	}
	if a, err := r.PartnerReport(ctx, q); err != nil || a.CachedAt == nil || a.TotalEvents != 1 {
		t.Fatalf("before the bump, the cached answer: %+v %v", a, err)
	}
	if err := cache.Bump(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if a, err := r.PartnerReport(ctx, q); err != nil || a.CachedAt != nil || a.TotalEvents != 2 {
		t.Fatalf("after the bump: %+v %v, want a fresh answer with the late event", a, err)
	}
	if a, err := r.PartnerReport(ctx, q); err != nil || a.CachedAt == nil || a.TotalEvents != 2 {
		t.Fatalf("after the bump, again: %+v %v, want it cached", a, err)
	}
	q.TZ = "Asia/Tokyo"
	if third, err := r.PartnerReport(ctx, q); err != nil || third.CachedAt != nil {
		t.Fatalf("another zone: %+v %v", third, err)
	}
}
