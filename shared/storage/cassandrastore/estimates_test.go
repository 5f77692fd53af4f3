package cassandrastore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// A fold writes each users row's estimate with its sketch, and a report's
// estimates read it, not the sketch. A writer that rewrites the sketch
// without it (a worker of the release before, mid-upgrade) leaves it older
// than the sketch: the slot is then estimated from its sketch, never from
// the stale number, until ReencodeUsers (or a fold) writes both again.
func TestEstimatesBesideSketches(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	var evs []event.Event
	for i := range 600 {
		evs = append(evs, event.Event{ID: fmt.Sprint("e-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			UserID: fmt.Sprint("u", i%500), Timestamp: at.Add(time.Duration(i) * 10 * time.Second)})
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	q := storage.UsersQuery{Scope: storage.SubSystemUsers, Key: sub, Res: storage.Hour, From: at, To: at.Add(3 * time.Hour)}
	rows := func() map[time.Time]*total {
		t.Helper()
		r, err := st.rangeTotals(ctx, kindUsers, int8(q.Scope), q.Key, q.Res, q.From, q.To, nil, false, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	estimates := func() map[time.Time]uint64 {
		t.Helper()
		out := map[time.Time]uint64{}
		if err := st.UserEstimates(ctx, q, func(s time.Time, n uint64) error { out[s] = n; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	folded := rows()
	if len(folded) != 2 {
		t.Fatalf("%d hour rows, want 2", len(folded))
	}
	for s, r := range folded {
		if !r.est {
			t.Fatalf("the folded row of %v carries no estimate its sketch vouches for", s)
		}
	}
	before := estimates()
	if before[at] < 350 || before[at] > 370 { // 360 users in the first hour
		t.Fatalf("estimates %v", before)
	}

	// The release before rewrites the first hour's sketch with 40 more
	// users, and not n (its fold's statement, condition and all).
	var sketch, through []byte
	pt := part{kindUsers, int8(q.Scope), sub, storage.Hour, periodOf(storage.Hour, at)}
	if err := st.s.Query("SELECT sketch, through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at).Scan(&sketch, &through); err != nil {
		t.Fatal(err)
	}
	var sk hll.Sketch
	if err := sk.MergeBinary(sketch); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		sk.Add(fmt.Sprint("old-", i))
	}
	applied, err := st.s.Query("UPDATE totals SET sketch = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ? IF through = ?",
		sk.Append(nil), through, pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at, through).MapScanCAS(map[string]any{})
	if err != nil || !applied {
		t.Fatalf("the old release's write: %v (applied %v)", err, applied)
	}
	if rows()[at].est {
		t.Fatal("a row whose sketch was rewritten without n still vouches for n")
	}
	after := estimates()
	if after[at] != sk.Estimate() || after[at] == before[at] {
		t.Fatalf("estimate of the rewritten hour %d, want its sketch's %d (was %d)", after[at], sk.Estimate(), before[at])
	}
	if next := at.Add(time.Hour); after[next] != before[next] {
		t.Fatalf("the other hour went from %d to %d", before[next], after[next])
	}

	// ReencodeUsers writes the estimate again; then it is read, and right.
	if n, err := st.ReencodeUsers(ctx, q.Scope, q.Key, q.Res, q.From, q.To); err != nil || n != 1 {
		t.Fatalf("ReencodeUsers rewrote %d rows (%v), want the one without its estimate", n, err)
	}
	if r := rows()[at]; !r.est || uint64(r.n) != sk.Estimate() {
		t.Fatalf("after ReencodeUsers the row holds n %d (vouched %v), want %d", r.n, r.est, sk.Estimate())
	}
	if again := estimates(); again[at] != sk.Estimate() {
		t.Fatalf("estimate %d after ReencodeUsers, want %d", again[at], sk.Estimate())
	}
	if n, err := st.ReencodeUsers(ctx, q.Scope, q.Key, q.Res, q.From, q.To); err != nil || n != 0 {
		t.Fatalf("a second ReencodeUsers rewrote %d rows (%v)", n, err)
	}
}
