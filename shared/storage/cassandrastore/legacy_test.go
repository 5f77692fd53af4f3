package cassandrastore

import (
	"context"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/tenant"
)

// Records written before versions and case-insensitive codes existed: two
// partners whose codes differ by case only, rows without a version, claims
// under the code as written. Each keeps working: found by its exact code,
// updated (the first update is conditional on the missing version).
func TestLegacyRecordsKeepWorking(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	ids := map[string]string{"acme": tenant.NewID(), "ACME": tenant.NewID()}
	for code, id := range ids {
		if err := st.s.Query("INSERT INTO partners (bucket, id, code, name, status, created_at, updated_at) VALUES (0, ?, ?, ?, 'Active', ?, ?)",
			id, code, "legacy "+code, now, now).Exec(); err != nil {
			t.Fatal(err)
		}
		if err := st.s.Query("INSERT INTO partner_codes (code, partner_id, claimed_at) VALUES (?, ?, ?)", code, id, now).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	for code, id := range ids {
		p, err := st.GetPartnerByCode(ctx, code)
		if err != nil || p.ID != id || p.Version != 0 {
			t.Fatalf("legacy %q by code: %+v, %v", code, p, err)
		}
	}
	if _, err := st.GetPartnerByCode(ctx, "Acme"); err != nil {
		t.Fatalf("a legacy code in a third case: %v", err)
	}
	p, _ := st.GetPartner(ctx, ids["ACME"])
	stale := p
	p.Name = "renamed"
	if err := st.UpdatePartner(ctx, p); err != nil {
		t.Fatalf("first update of a versionless row: %v", err)
	}
	stale.Status = tenant.Inactive
	if err := st.UpdatePartner(ctx, stale); err == nil {
		t.Fatal("a stale update of a formerly versionless row was applied")
	}
	if got, _ := st.GetPartner(ctx, ids["ACME"]); got.Version != 1 || got.Name != "renamed" || got.Status != tenant.Active {
		t.Fatalf("after update: %+v", got)
	}
	if got, err := st.GetPartnerByCode(ctx, "ACME"); err != nil || got.ID != ids["ACME"] {
		t.Fatalf("exact legacy code after update: %+v, %v", got, err)
	}
	if got, err := st.GetPartnerByCode(ctx, "acme"); err != nil || got.ID != ids["acme"] {
		t.Fatalf("the other legacy code after update: %+v, %v", got, err)
	}
	// Deleting the legacy record releases its claim as written.
	p, _ = st.GetPartner(ctx, ids["ACME"])
	p.Status = tenant.Deleted
	if err := st.UpdatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.s.Query("SELECT COUNT(*) FROM partner_codes WHERE code = 'ACME'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("legacy claim not released: %d, %v", n, err)
	}
}
