package cassandrastore

import (
	"context"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// copyTotals says "copying again writes the same rows", and nothing stops
// the new workers while it runs (or before a re-run of an interrupted
// migration: version 10 is recorded only at its end). Once a fold has added
// manifests into a copied slot, a copy (again) overwrites the row with the
// old sums and through {"-": 0}: the folded events, below applied, are
// never counted again.
func TestCopyTotalsAgainAfterFold(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	m := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	ins := "INSERT INTO rollups (rollup, key, res, period, slot, batch_id, n, claims, groups, claim_groups, complete) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL 86400000"
	if err := st.s.Query(ins, int8(storage.PartnerTypes), p, dayOf(m), m, gocql.MinTimeUUID(time.Unix(0, 0)), 5, nil, map[string]int64{"view": 5}, nil, nil).Exec(); err != nil {
		t.Fatal(err)
	}
	total := func() int64 {
		t.Helper()
		return countsTotal(t, st, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: storage.Minute, From: m, To: m.Add(time.Minute)})
	}
	if err := copyTotals(ctx, st.s, st.cfg.Keyspace); err != nil {
		t.Fatal(err)
	}
	if _, err := st.WriteEvents(ctx, []event.Event{
		{ID: "new-1", PartnerID: p, SubSystemID: sub, EventType: "buy", Timestamp: m.Add(time.Second), UserID: "4"},
		{ID: "new-2", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: m.Add(2 * time.Second), UserID: "1"},
	}); err != nil {
		t.Fatal(err)
	}
	foldNow(t, st)
	if n := total(); n != 7 {
		t.Fatalf("after the fold: %d, want 7", n)
	}
	if err := copyTotals(ctx, st.s, st.cfg.Keyspace); err != nil { // the migration again
		t.Fatal(err)
	}
	if n := total(); n != 7 {
		t.Fatalf("after copying again: %d, want 7 (5 copied + 2 folded)", n)
	}
}
