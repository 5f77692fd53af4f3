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

// TestCachedPages: a page of raw events over a given range is cached as a
// report is (in process as on the all-in-one, and in Redis as in
// production): the same page again comes with cachedAt; every parameter
// and the cursor's position is its own entry; a late event and the
// generation the workers bump for it make the next page list it; a first
// page without to (up to now) is never cached.
func TestCachedPages(t *testing.T) {
	type bumper interface {
		reporter.Cache
		Bump(ctx context.Context, ids ...string) error
	}
	caches := map[string]func(t *testing.T) (bumper, *pebblestore.Store, tenant.Partner, tenant.SubSystem, time.Time){
		"in-process": func(t *testing.T) (bumper, *pebblestore.Store, tenant.Partner, tenant.SubSystem, time.Time) {
			store, err := pebblestore.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			p := tenant.Partner{ID: tenant.NewID(), Code: "pages", Name: "Pages", Status: tenant.Active}
			ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
			if err := store.CreatePartner(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			if err := store.CreateSubSystem(context.Background(), ss); err != nil {
				t.Fatal(err)
			}
			return rcache.NewLocal(1 << 20), store, p, ss, time.Now().UTC().Add(-3 * time.Hour)
		},
		"redis": func(t *testing.T) (bumper, *pebblestore.Store, tenant.Partner, tenant.SubSystem, time.Time) {
			f := newRedisFixture(t, "pages")
			return f.cache, f.store, f.p, f.ss, f.at
		},
	}
	for name, open := range caches {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cache, store, p, ss, at := open(t)
			other := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "app", Name: "App", Status: tenant.Active}
			if err := store.CreateSubSystem(ctx, other); err != nil {
				t.Fatal(err)
			}
			var evs []event.Event
			for i := range 6 {
				sub, typ := []string{ss.ID, other.ID}[i%2], []string{"view", "buy"}[i%3/2]
				evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p.ID, SubSystemID: sub, EventType: typ,
					Timestamp: at.Add(time.Duration(i) * time.Minute), UserID: "u"})
			}
			if _, err := store.WriteEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			r := reporter.New(store, zerolog.Nop()).WithCache(cache, time.Minute)
			ids := func(pg *report.EventsPage) string {
				var s []string
				for _, e := range pg.Events {
					s = append(s, e.ID)
				}
				return fmt.Sprint(s)
			}
			page := func(q report.EventsQuery, cached bool, want string) *report.EventsPage {
				t.Helper()
				pg, err := r.EventsPage(ctx, q)
				if err != nil {
					t.Fatalf("%+v: %v", q, err)
				}
				if (pg.CachedAt != nil) != cached || ids(pg) != want {
					t.Fatalf("%+v: events %s cachedAt %v, want %s cached %v", q, ids(pg), pg.CachedAt, want, cached)
				}
				return pg
			}
			q := report.EventsQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour), Limit: 2}
			first := page(q, false, "[e5 e4]")
			again := page(q, true, "[e5 e4]")
			if again.NextCursor != first.NextCursor || again.DataCompleteUntil != nil || !again.To.Equal(first.To) {
				t.Fatalf("cached page %+v, computed %+v", again, first)
			}
			// The next page is its own entry, and so is each parameter.
			next := q
			next.Cursor = first.NextCursor
			page(next, false, "[e3 e2]")
			page(next, true, "[e3 e2]")
			for what, v := range map[string]report.EventsQuery{
				"from":        {PartnerID: p.ID, From: at.Add(2 * time.Minute), To: q.To, Limit: 2},
				"to":          {PartnerID: p.ID, From: q.From, To: at.Add(4 * time.Minute), Limit: 2},
				"limit":       {PartnerID: p.ID, From: q.From, To: q.To, Limit: 3},
				"eventType":   {PartnerID: p.ID, From: q.From, To: q.To, Limit: 2, EventType: "buy"},
				"subSystemId": {PartnerID: p.ID, From: q.From, To: q.To, Limit: 2, SubSystemID: ss.ID},
			} {
				want := map[string]string{"from": "[e5 e4]", "to": "[e3 e2]", "limit": "[e5 e4 e3]", "eventType": "[e5 e2]", "subSystemId": "[e4 e2]"}[what]
				page(v, false, want)
				page(v, true, want)
			}
			// A late event, then the bump the workers make for it.
			if _, err := store.WriteEvents(ctx, []event.Event{{ID: "late", PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view",
				Timestamp: at.Add(30 * time.Minute), UserID: "v"}}); err != nil {
				t.Fatal(err)
			}
			page(q, true, "[e5 e4]")
			if err := cache.Bump(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
			page(q, false, "[late e5]")
			page(q, true, "[late e5]")
			// Up to now: a range asked once, never kept.
			open := report.EventsQuery{PartnerID: p.ID, From: at.Add(-time.Hour), Limit: 2}
			page(open, false, "[late e5]")
			page(open, false, "[late e5]")
		})
	}
}
