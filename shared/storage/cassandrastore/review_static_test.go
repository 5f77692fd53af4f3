package cassandrastore

import (
	"context"
	"fmt"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// (From an outside review.) Claims expire with the horizon but stay as
// tombstones for gc_grace (10 days): a read of a claim partition's seal and
// applied must not walk them (it did, as static columns read with LIMIT 1,
// and failed with too many tombstones once 20,000 ids had expired). Here
// the horizon is cut to 2 s to stand for a day passing.
func TestFloorReadPastExpiredClaims(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	st.cfg.DedupHorizon = 2 * time.Second // the horizon has passed
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	ts := time.Now().UTC().Add(-5 * time.Minute)
	var ids []string
	for i := 0; len(ids) < 20000; i++ {
		if id := fmt.Sprintf("evt-%09d", i); claimBucket(id) == 0 {
			ids = append(ids, id)
		}
	}
	for i := 0; i < len(ids); i += 2000 {
		evs := make([]event.Event, 0, 2000)
		for _, id := range ids[i:min(i+2000, len(ids))] {
			evs = append(evs, event.Event{ID: id, PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: ts})
		}
		if _, err := st.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; { // every claim has expired
		var id string
		err := st.s.Query("SELECT id FROM claims WHERE partner_id = ? AND bucket = 0 AND id = ?", p, ids[len(ids)-1]).Scan(&id)
		if err == gocql.ErrNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the claims never expired: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st.applied.Delete(p) // a reader that has no floor cached
	start := time.Now()
	_, _, err := st.readApplied(ctx, p, false)
	t.Logf("floor read: %v, %v", time.Since(start), err)
	if err != nil {
		t.Errorf("reading the floor of a partition whose claims expired: %v", err)
	}
	pc, err := storage.PartnerCounts(ctx, st, p, ts.Add(-time.Hour), ts.Add(time.Hour))
	if err != nil {
		t.Errorf("report: %v", err)
	}
	var n int64
	for _, c := range pc {
		n += c.Count
	}
	if n != int64(len(ids)) {
		t.Errorf("report: %d events, want %d", n, len(ids))
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Errorf("fold: %v", err)
	}
}
