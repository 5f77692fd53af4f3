package reporter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/tenant"
)

// With every slot taken, a report waits its turn within its deadline, then
// answers timeout (never a hang); a freed slot lets the next one through.
func TestReportsWaitTheirTurn(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	s := New(store, zerolog.Nop()).WithMaxConcurrent(1)
	held, err := s.turn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q := report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var ae *apierr.Error
	if _, err := s.PartnerReport(short, q); !errors.As(err, &ae) || ae.Code != apierr.Timeout {
		t.Fatalf("a report with every slot taken: %v, want timeout", err)
	}
	if _, err := s.EventsPage(short, report.EventsQuery{PartnerID: p.ID}); !errors.As(err, &ae) || ae.Code != apierr.Timeout {
		t.Fatalf("a page of events with every slot taken: %v, want timeout", err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.PartnerReport(ctx, q); done <- err }()
	held()
	if err := <-done; err != nil {
		t.Fatalf("after the slot was freed: %v", err)
	}
}

// A cached answer takes no slot: with every slot held, it still comes
// back at once, while a report not in the cache waits.
func TestCacheHitsTakeNoSlot(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	s := New(store, zerolog.Nop()).WithMaxConcurrent(1).WithCache(rcache.NewLocal(1<<20), time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()}
	if _, err := s.PartnerReport(ctx, q); err != nil {
		t.Fatal(err)
	}
	held, err := s.turn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	rep, err := s.PartnerReport(short, q)
	if err != nil || rep.CachedAt == nil {
		t.Fatalf("a cached report with every slot taken: %+v, %v; want it from the cache", rep, err)
	}
	var ae *apierr.Error
	q.Top = 3 // another key: not cached
	if _, err := s.PartnerReport(short, q); !errors.As(err, &ae) || ae.Code != apierr.Timeout {
		t.Fatalf("an uncached report with every slot taken: %v, want timeout", err)
	}
}

// storeWithPartner is a Pebble store holding one partner.
func storeWithPartner(t *testing.T) (*pebblestore.Store, tenant.Partner) {
	t.Helper()
	store, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p := tenant.Partner{ID: tenant.NewID(), Code: "c", Name: "C", Status: tenant.Active}
	if err := store.CreatePartner(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return store, p
}
