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

// TestRedisCache: answers cached in Redis (as in production) come back
// with cachedAt and the same figures; a fresh answer has none; another
// parameter is another entry.
func TestRedisCache(t *testing.T) {
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	ctx := context.Background()
	cache, err := rcache.Open(ctx, url, fmt.Sprintf("test-%d-%d:", os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	store, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p := tenant.Partner{ID: tenant.NewID(), Code: "c", Name: "C", Status: tenant.Active}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
	store.CreatePartner(ctx, p)
	store.CreateSubSystem(ctx, ss)
	at := time.Now().UTC().Add(-3 * time.Hour)
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
