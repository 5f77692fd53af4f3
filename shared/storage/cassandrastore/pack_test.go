package cassandrastore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Hours before the packs' start are read as rows; PackHours packs hours
// folded without them, after which they read from packs with the same
// figures. The packs are what is read: with the start moved back over
// hours never packed, those hours read as nothing.
func TestPackHours(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var evs []event.Event
	for i := range 900 {
		evs = append(evs, event.Event{ID: fmt.Sprint("p-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			UserID: fmt.Sprint("u", i%300), Timestamp: at.Add(time.Duration(i) * 3 * time.Minute)}) // 45 hours
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	from, to := at, at.Add(48*time.Hour)
	figures := func() string {
		t.Helper()
		counts, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		var est []string
		if err := st.UserEstimates(ctx, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Hour, From: from, To: to}, func(s time.Time, n uint64) error {
			est = append(est, fmt.Sprint(s.Format(time.RFC3339), "=", n))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(len(counts), counts, est)
	}
	want := figures() // a new keyspace: packs from the start
	if want[:3] != "45 " {
		t.Fatalf("figures %s", want)
	}
	// As if folded before packs were kept: no pack, the start after them.
	for _, k := range []struct {
		kind, a int8
		key     string
	}{{kindCounts, int8(storage.SubSystemTypes), sub}, {kindUsers, int8(storage.PartnerUsers), p}} {
		for _, period := range periods(storage.Hour, from, to) {
			if err := st.s.Query("DELETE FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot >= ? AND slot <= ?",
				k.kind, k.a, k.key, int8(storage.Hour), period, time.UnixMilli(1), time.UnixMilli(31)).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.packsSince = time.Now().AddDate(1, 0, 0)
	if got := figures(); got != want {
		t.Fatalf("hours before the packs' start, read as rows:\n%s\nwant\n%s", got, want)
	}
	st.packsSince = time.Unix(0, 0)
	if got := figures(); got == want || got[:2] != "0 " {
		t.Fatalf("hours never packed, read from packs: %s", got)
	}
	for _, k := range []struct {
		kind, a int8
		key     string
	}{{kindCounts, int8(storage.SubSystemTypes), sub}, {kindUsers, int8(storage.PartnerUsers), p}} {
		n, err := st.packHours(ctx, k.kind, k.a, k.key, from, to)
		if err != nil || n != 45 {
			t.Fatalf("PackHours packed %d hours (%v), want 45", n, err)
		}
	}
	if got := figures(); got != want {
		t.Fatalf("after PackHours:\n%s\nwant\n%s", got, want)
	}
}
