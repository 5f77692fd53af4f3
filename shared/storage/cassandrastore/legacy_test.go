package cassandrastore

import (
	"context"
	"fmt"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
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
	// 0005 -> 0007 (copyCounts), then 0007 -> totals (copyTotals); both
	// may run again and change nothing.
	for range 2 {
		if err := copyCounts(ctx, st.s, st.cfg.Keyspace); err != nil {
			t.Fatal(err)
		}
		if err := copyTotals(ctx, st.s, st.cfg.Keyspace); err != nil {
			t.Fatal(err)
		}
		check()
	}
}

// totalBatch is 0007's batch id of a folded total row.
var totalBatch = gocql.MinTimeUUID(time.Unix(0, 0))

// Rows of 0007's rollups (a folded total, a worker's complete row, a row
// healed per claim group) and sketches are summed into totals, one row per
// slot; events written after the copy add to them.
func TestCopyTotalsFromRollups(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	m := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	day := dayOf(m)
	exec := func(stmt string, args ...any) {
		t.Helper()
		if err := st.s.Query(stmt, args...).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	ins := "INSERT INTO rollups (rollup, key, res, period, slot, batch_id, n, claims, groups, claim_groups, complete) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL 86400000"
	exec(ins, int8(storage.PartnerTypes), p, day, m, totalBatch, 5, nil, map[string]int64{"view": 5}, nil, nil)
	exec(ins, int8(storage.PartnerTypes), p, day, m, gocql.TimeUUID(), nil, map[int]int64{3: 2, 7: 1}, map[string]int64{"view": 2, "buy": 1}, nil, true)
	exec(ins, int8(storage.PartnerTypes), p, day, m, gocql.TimeUUID(), nil, map[int]int64{4: 3}, nil, map[string]int64{"view/4": 1, "buy/4": 2}, nil)
	var a, b hll.Sketch
	a.Add("u:1")
	a.Add("u:2")
	b.Add("u:2")
	b.Add("a:3")
	insU := "INSERT INTO user_sketches (scope, key, res, period, slot, batch_id, sketch) VALUES (?, ?, 0, ?, ?, ?, ?) USING TTL 86400000"
	exec(insU, int8(storage.PartnerUsers), p, day, m, totalBatch, a.Append(nil))
	exec(insU, int8(storage.PartnerUsers), p, day, m, gocql.TimeUUID(), b.Append(nil))
	check := func(view, buy int64, users uint64) {
		t.Helper()
		slots, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: storage.Minute, From: m, To: m.Add(time.Minute), Groups: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(slots) != 1 || slots[0].Total != view+buy || slots[0].Groups["view"] != view || slots[0].Groups["buy"] != buy {
			t.Fatalf("copied counts %+v, want view %d, buy %d", slots, view, buy)
		}
		us, err := storage.UserSlots(ctx, st, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Minute, From: m, To: m.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		var sk hll.Sketch
		for _, u := range us {
			if err := sk.MergeBinary(u.Sketch); err != nil {
				t.Fatal(err)
			}
		}
		if sk.Estimate() != users {
			t.Fatalf("copied users: %d, want %d", sk.Estimate(), users)
		}
	}
	for range 2 {
		if err := copyTotals(ctx, st.s, st.cfg.Keyspace); err != nil {
			t.Fatal(err)
		}
		check(8, 3, 3)
	}
	if _, err := st.WriteEvents(ctx, []event.Event{
		{ID: "after-1", PartnerID: p, SubSystemID: sub, EventType: "buy", Timestamp: m.Add(time.Second), UserID: "4"},
		{ID: "after-2", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: m.Add(2 * time.Second), UserID: "1"},
	}); err != nil {
		t.Fatal(err)
	}
	check(9, 4, 4)
	foldNow(t, st)
	check(9, 4, 4)
}
