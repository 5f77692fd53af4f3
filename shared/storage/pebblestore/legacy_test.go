package pebblestore

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/tenant"
)

// Records written before versions and case-insensitive codes: two partners
// whose codes differ by case only, without a version, indexed under the
// code as written. Each keeps working (found by its exact code, updated).
func TestLegacyRecordsKeepWorking(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	ids := map[string]string{"acme": tenant.NewID(), "ACME": tenant.NewID()}
	for code, id := range ids {
		legacy := map[string]any{"id": id, "code": code, "name": "legacy", "status": "Active", "createdAt": now, "updatedAt": now}
		if err := s.db.Set(key("p", id), mustJSON(legacy), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Set(key("pc", code), []byte(id), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	for code, id := range ids {
		if p, err := s.GetPartnerByCode(ctx, code); err != nil || p.ID != id || p.Version != 0 {
			t.Fatalf("legacy %q: %+v %v", code, p, err)
		}
	}
	p, _ := s.GetPartner(ctx, ids["ACME"])
	p.Name = "renamed"
	if err := s.UpdatePartner(ctx, p); err != nil {
		t.Fatalf("update of a legacy record: %v", err)
	}
	for code, id := range ids {
		if got, err := s.GetPartnerByCode(ctx, code); err != nil || got.ID != id {
			t.Fatalf("after update, %q: %+v %v", code, got, err)
		}
	}
	if got, _ := s.GetPartner(ctx, ids["ACME"]); got.Version != 1 || got.Name != "renamed" {
		t.Fatalf("after update: %+v", got)
	}
}

// Hourly counts written before counts were kept per quarter hour are still
// read, as the hour's first quarter, beside new quarter counts of the same
// hour; each is counted once.
func TestLegacyHourlyCounts(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	h := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	p, sub := tenant.NewID(), tenant.NewID()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], 5)
	if err := s.db.Set(key("rs", sub, hourKey(h), "view"), n[:], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Set(key("rp", p, hourKey(h), sub), n[:], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	e := event.Event{ID: "new-1", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: h.Add(40 * time.Minute), ReceivedAt: h.Add(40 * time.Minute)}
	if _, err := s.WriteEvents(ctx, []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.SubSystemCounts(ctx, sub, h, h.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[time.Time]int64{}
	for _, c := range cs {
		got[c.Start] += c.Count
	}
	if len(got) != 2 || got[h] != 5 || got[h.Add(30*time.Minute)] != 1 {
		t.Fatalf("counts %v: want 5 at %s (legacy) and 1 at %s", got, h.Format("15:04"), h.Add(30*time.Minute).Format("15:04"))
	}
	ps, err := s.PartnerCounts(ctx, p, h.Add(-time.Hour), h.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range ps {
		total += c.Count
	}
	if total != 6 {
		t.Fatalf("partner total %d, want 6", total)
	}
	// A range starting after the legacy hour's start leaves it out.
	cs, _ = s.SubSystemCounts(ctx, sub, h.Add(15*time.Minute), h.Add(time.Hour))
	if len(cs) != 1 || cs[0].Count != 1 {
		t.Fatalf("from :15: %+v", cs)
	}
}
