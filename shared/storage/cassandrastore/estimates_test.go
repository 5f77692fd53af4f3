package cassandrastore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// releaseBefore decodes a counts blob as every release before usersMark
// did: the format's loop, nothing else.
func releaseBefore(b []byte) error {
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return errBadCounts
		}
		b = b[n+int(l):]
		if _, n = binary.Uvarint(b); n <= 0 {
			return errBadCounts
		}
		b = b[n:]
	}
	return nil
}

// A fold writes each users row's estimate with its sketch and marks its
// through, which a release before cannot decode: its fold of the row fails
// rather than rewrite the sketch and leave the estimate stale (counts rows
// keep the old format, which old readers still read). A report's estimates
// read n, not the sketch. A row folded before this release (no n, through
// unmarked) is estimated from its sketch, until ReencodeUsers (or a fold)
// writes both.
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
			t.Fatalf("the folded row of %v carries no estimate", s)
		}
	}
	// Every users row the fold wrote is closed to a release before; every
	// counts row is still open to its readers.
	users, counts := 0, 0
	for _, kind := range []int8{kindUsers, kindCounts} {
		iter := st.s.Query("SELECT through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ?",
			kind, int8(0), sub, int8(storage.Hour), periodOf(storage.Hour, false, at)).Iter()
		var through []byte
		for iter.Scan(&through) {
			if through == nil {
				continue // a pack (pack.go)
			}
			err := releaseBefore(through)
			if kind == kindUsers {
				users++
				if err == nil {
					t.Fatalf("a release before decodes a users row's through % x", through)
				}
				if _, err := decodeMap(through); err != nil {
					t.Fatalf("this release cannot decode a users row's through: %v", err)
				}
			} else if counts++; err != nil {
				t.Fatalf("a release before cannot decode a counts row's through: %v", err)
			}
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if users != 2 || counts != 2 {
		t.Fatalf("%d users rows and %d counts rows read", users, counts)
	}
	var sketch, through []byte
	pt := part{kindUsers, int8(q.Scope), sub, storage.Hour, periodOf(storage.Hour, false, at)}
	if err := st.s.Query("SELECT sketch, through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at).Scan(&sketch, &through); err != nil {
		t.Fatal(err)
	}
	var sk hll.Sketch
	if err := sk.MergeBinary(sketch); err != nil {
		t.Fatal(err)
	}
	before := estimates()
	if before[at] != sk.Estimate() || before[at] < 350 || before[at] > 370 { // 360 users in the first hour
		t.Fatalf("estimates %v, the first hour's sketch %d", before, sk.Estimate())
	}

	// The first hour as a release before folded it, with 40 more users: no
	// n, through unmarked, and before the packs' start (pack.go).
	st.packsSince = time.Now().AddDate(1, 0, 0)
	for i := range 40 {
		sk.Add(fmt.Sprint("old-", i))
	}
	old := bytes.TrimPrefix(through, usersMark)
	if err := st.s.Query("UPDATE totals SET sketch = ?, n = null, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		sk.Append(nil), old, pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at).Exec(); err != nil {
		t.Fatal(err)
	}
	if rows()[at].est {
		t.Fatal("a row without n reads as estimated")
	}
	after := estimates()
	if after[at] != sk.Estimate() || after[at] == before[at] {
		t.Fatalf("estimate of the hour folded before %d, want its sketch's %d (was %d)", after[at], sk.Estimate(), before[at])
	}
	if next := at.Add(time.Hour); after[next] != before[next] {
		t.Fatalf("the other hour went from %d to %d", before[next], after[next])
	}

	// ReencodeUsers writes n and marks through; then n is read, and right.
	if n, err := st.ReencodeUsers(ctx, q.Scope, q.Key, q.Res, q.From, q.To); err != nil || n != 1 {
		t.Fatalf("ReencodeUsers rewrote %d rows (%v), want the one without its estimate", n, err)
	}
	if r := rows()[at]; !r.est || uint64(r.n) != sk.Estimate() {
		t.Fatalf("after ReencodeUsers the row holds n %d (%v), want %d", r.n, r.est, sk.Estimate())
	}
	var now []byte
	if err := st.s.Query("SELECT through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at).Scan(&now); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(now, append(append([]byte(nil), usersMark...), old...)) {
		t.Fatalf("through after ReencodeUsers % x, want the same marked", now)
	}
	if again := estimates(); again[at] != sk.Estimate() {
		t.Fatalf("estimate %d after ReencodeUsers, want %d", again[at], sk.Estimate())
	}
	if n, err := st.ReencodeUsers(ctx, q.Scope, q.Key, q.Res, q.From, q.To); err != nil || n != 0 {
		t.Fatalf("a second ReencodeUsers rewrote %d rows (%v)", n, err)
	}
}
