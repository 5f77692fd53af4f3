package cassandrastore

import (
	"context"
	"fmt"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/storage"

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

// Counts of the 0005 layout (a folded total and a batch row per quarter
// and group) are copied into the rollups at every resolution, the quarter
// landing on its first minute; copying again, or after a fold, changes
// nothing.
func TestCopyCountsFromOldLayout(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	q := time.Now().UTC().Add(-26 * time.Hour).Truncate(15 * time.Minute).Add(15 * time.Minute)
	day := dayOf(q)
	exec := func(stmt string, args ...any) {
		t.Helper()
		if err := st.s.Query(stmt, args...).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	exec("INSERT INTO sub_system_ids (id, partner_id) VALUES (?, ?)", sub, p)
	exec("INSERT INTO counts_by_sub_system (sub_system_id, day, quarter, event_type, batch_id, n) VALUES (?, ?, ?, 'view', ?, 5) USING TTL 86400000", sub, day, q, totalBatch)
	exec("INSERT INTO counts_by_sub_system (sub_system_id, day, quarter, event_type, batch_id, groups, complete) VALUES (?, ?, ?, 'view', ?, {3: 2}, true) USING TTL 86400000", sub, day, q, gocql.TimeUUID())
	exec("INSERT INTO counts_by_sub_system (sub_system_id, day, quarter, event_type, batch_id, n) VALUES (?, ?, ?, 'buy', ?, 1) USING TTL 86400000", sub, day, q.Add(time.Hour), totalBatch)
	exec("INSERT INTO counts_by_partner (partner_id, day, quarter, sub_system_id, batch_id, n) VALUES (?, ?, ?, ?, ?, 7) USING TTL 86400000", p, day, q, sub, totalBatch)
	exec("INSERT INTO counts_by_partner (partner_id, day, quarter, sub_system_id, batch_id, n) VALUES (?, ?, ?, ?, ?, 1) USING TTL 86400000", p, day, q.Add(time.Hour), sub, totalBatch)

	check := func() {
		t.Helper()
		for _, res := range storage.Resolutions {
			for _, c := range []struct {
				r    storage.Rollup
				key  string
				want map[string]int64
			}{
				{storage.SubSystemTypes, sub, map[string]int64{"view": 7, "buy": 1}},
				{storage.PartnerTypes, p, map[string]int64{"view": 7, "buy": 1}},
				{storage.PartnerSubSystems, p, map[string]int64{sub: 8}},
			} {
				slots, err := st.Counts(ctx, storage.CountsQuery{Rollup: c.r, Key: c.key, Res: res, From: q.Add(-48 * time.Hour), To: q.Add(48 * time.Hour), Groups: true})
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]int64{}
				for _, s := range slots {
					for g, n := range s.Groups {
						got[g] += n
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Fatalf("%s rollup %d: %v, want %v", res, c.r, got, c.want)
				}
				if res == storage.Minute && !slots[0].Start.Equal(q) {
					t.Fatalf("minute slot %v, want the quarter's first minute %v", slots[0].Start, q)
				}
			}
		}
	}
	for range 2 {
		if err := copyCounts(ctx, st.s, st.cfg.Keyspace); err != nil {
			t.Fatal(err)
		}
		check()
	}
	var keys []foldKey
	for _, res := range storage.Resolutions {
		per := periodOf(res, res.Slot(q))
		keys = append(keys, foldKey{'r', int8(storage.SubSystemTypes), sub, res, per}, foldKey{'r', int8(storage.PartnerTypes), p, res, per},
			foldKey{'r', int8(storage.PartnerSubSystems), p, res, per})
	}
	foldAll(t, st, keys, time.Now().Add(time.Hour))
	if err := copyCounts(ctx, st.s, st.cfg.Keyspace); err != nil {
		t.Fatal(err)
	}
	check()
}
