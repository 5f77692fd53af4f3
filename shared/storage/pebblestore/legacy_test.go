package pebblestore

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

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
