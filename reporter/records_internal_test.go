package reporter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// The records a report reads are read once a minute: a renamed sub-system
// and a renamed partner show after it, not before; one not found, or a
// failed read, is asked again at once.
func TestRecordsReadOnceAMinute(t *testing.T) {
	ctx := context.Background()
	inner := testenv.Pebble(t)
	store := &countingStore{Store: inner}
	now := time.Now().UTC()
	p := tenant.Partner{ID: tenant.NewID(), Code: "rec", Name: "Old partner", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "Old", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := store.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	// An event, so the partner report's top list names the sub-system.
	if _, err := store.WriteEvents(ctx, []event.Event{{ID: "rec-1", PartnerID: p.ID, SubSystemID: ss.ID, EventType: "t",
		Timestamp: now.Truncate(24 * time.Hour).Add(-30 * time.Minute), ReceivedAt: now}}); err != nil {
		t.Fatal(err)
	}
	clock := now
	r := New(store, zerolog.Nop())
	r.now = func() time.Time { return clock }
	day := now.Truncate(24 * time.Hour)
	k := 0
	// ask computes a report of a range never asked before (no report is
	// served from a cache here: New keeps none; the range varies anyway).
	ask := func() (*report.SubSystemReport, *report.PartnerReport) {
		k++
		from := day.Add(-time.Duration(k) * time.Hour)
		sr, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: day})
		if err != nil {
			t.Fatal(err)
		}
		pr, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, SubSystemID: ss.ID, From: from, To: day})
		if err != nil {
			t.Fatal(err)
		}
		return sr, pr
	}
	ask()
	ss, err := store.GetSubSystem(ctx, ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	ss.Name = "New"
	if err := store.UpdateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	p, err = store.GetPartner(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "New partner"
	if err := store.UpdatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	subs, partners, lists := store.subs, store.partners, store.lists
	topName := func(pr *report.PartnerReport) string {
		if len(pr.TopSubSystems) != 1 {
			t.Fatalf("top list %+v, want the one sub-system", pr.TopSubSystems)
		}
		return pr.TopSubSystems[0].SubSystemName
	}
	clock = clock.Add(recordFor - time.Second)
	if sr, pr := ask(); sr.SubSystemName != "Old" || pr.PartnerName != "Old partner" || topName(pr) != "Old" {
		t.Fatalf("within the minute: %q, %q, %q", sr.SubSystemName, pr.PartnerName, topName(pr))
	}
	if store.subs != subs || store.partners != partners || store.lists != lists {
		t.Fatalf("within the minute, read %d sub-systems, %d partners and %d lists again", store.subs-subs, store.partners-partners, store.lists-lists)
	}
	clock = clock.Add(2 * time.Second)
	if sr, pr := ask(); sr.SubSystemName != "New" || pr.PartnerName != "New partner" || topName(pr) != "New" {
		t.Fatalf("after the minute: %q, %q, %q", sr.SubSystemName, pr.PartnerName, topName(pr))
	}
	// A change the registry announces (Service.changed, as followed) shows
	// at once, within the minute.
	if ss, err = store.GetSubSystem(ctx, ss.ID); err != nil {
		t.Fatal(err)
	}
	ss.Name = "Newer"
	if err := store.UpdateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	if sr, pr := ask(); sr.SubSystemName != "New" || topName(pr) != "New" {
		t.Fatalf("before the change is announced: %q, %q", sr.SubSystemName, topName(pr))
	}
	r.changed(ctx, []string{p.ID, ss.ID})
	if sr, pr := ask(); sr.SubSystemName != "Newer" || topName(pr) != "Newer" {
		t.Fatalf("after the change is announced: %q, %q", sr.SubSystemName, topName(pr))
	}
	// A clock that steps back does not make a record young again.
	clock = clock.Add(-time.Hour)
	subs = store.subs
	ask()
	if store.subs == subs {
		t.Fatal("a record read in the future was used")
	}

	// Not found, then created: found at once.
	late := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "late", Name: "Late", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1}
	q := report.SubSystemQuery{SubSystemID: late.ID, From: day.Add(-time.Hour), To: day}
	if _, err := r.SubSystemReport(ctx, q); err == nil {
		t.Fatal("a report of a sub-system not yet created")
	}
	if err := store.CreateSubSystem(ctx, late); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SubSystemReport(ctx, q); err != nil {
		t.Fatalf("created after a report found it missing: %v", err)
	}
	// A failed read is not kept either.
	fresh := New(store, zerolog.Nop())
	store.fail = errors.New("store unavailable")
	if _, err := fresh.SubSystemReport(ctx, q); !errors.Is(err, store.fail) {
		t.Fatalf("with reads failing: %v", err)
	}
	store.fail = nil
	if _, err := fresh.SubSystemReport(ctx, q); err != nil {
		t.Fatalf("after a failed read: %v", err)
	}
}

// countingStore counts the partners and sub-systems read by id, and fails
// those reads when told.
type countingStore struct {
	storage.Store
	subs, partners, lists int
	fail                  error
}

func (c *countingStore) ListSubSystems(ctx context.Context, partnerID string, withDeleted bool) ([]tenant.SubSystem, error) {
	c.lists++
	if c.fail != nil {
		return nil, c.fail
	}
	return c.Store.ListSubSystems(ctx, partnerID, withDeleted)
}

func (c *countingStore) GetSubSystem(ctx context.Context, id string) (tenant.SubSystem, error) {
	c.subs++
	if c.fail != nil {
		return tenant.SubSystem{}, c.fail
	}
	return c.Store.GetSubSystem(ctx, id)
}

func (c *countingStore) GetPartner(ctx context.Context, id string) (tenant.Partner, error) {
	c.partners++
	if c.fail != nil {
		return tenant.Partner{}, c.fail
	}
	return c.Store.GetPartner(ctx, id)
}

// A record read while a change is announced is used but not kept: it may
// hold what the change replaced.
func TestRecordReadAcrossAChangeIsNotKept(t *testing.T) {
	var r records[string]
	ctx, now := context.Background(), time.Now()
	reads := 0
	read := func(context.Context, string) (string, error) {
		reads++
		if reads == 1 {
			r.forget("x") // the change arrives while the store answers
			return "old", nil
		}
		return "new", nil
	}
	if v, _ := r.get(ctx, "x", now, read); v != "old" {
		t.Fatalf("first read: %q", v)
	}
	if v, _ := r.get(ctx, "x", now, read); v != "new" || reads != 2 {
		t.Fatalf("after a read across a change: %q after %d reads, want it read again", v, reads)
	}
	if v, _ := r.get(ctx, "x", now, read); v != "new" || reads != 2 {
		t.Fatalf("then: %q after %d reads, want it kept", v, reads)
	}
}

// A cache with a bound keeps at most that many records.
func TestRecordsBounded(t *testing.T) {
	r := records[int]{max: 2}
	ctx, now := context.Background(), time.Now()
	for i := range 5 {
		if _, err := r.get(ctx, fmt.Sprint(i), now, func(context.Context, string) (int, error) { return i, nil }); err != nil {
			t.Fatal(err)
		}
		if len(r.m) > 2 {
			t.Fatalf("after %d reads, %d records kept, want at most 2", i+1, len(r.m))
		}
	}
}
