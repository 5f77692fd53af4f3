package cassandrastore

import (
	"context"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Review: a fold between the seal's read and its write that rewrites an
// hour's entry with the same n but a longer TTL (a users row: a user
// already counted, from an event kept longer, leaves the estimate as it
// was). Conditional on the map's values alone, the seal applied with the
// expiry it read, and the entry was dropped from the report while its hour
// row (and the later event) was still there; pack_write makes it lose.
func TestReviewSealKeepsTheTTLItRead(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	hour := day.Add(5 * time.Hour)
	// The first event, at the hour's last second, kept until about 15 s
	// from now: its hour row expires a second after it.
	ts1 := hour.Add(time.Hour - time.Second)
	short := time.Now().Add(15 * time.Second).Sub(ts1).Truncate(time.Second)
	ev := func(id string, ts time.Time, ret time.Duration) event.Event {
		return event.Event{ID: id, PartnerID: p, SubSystemID: sub, EventType: "view", UserID: "same-user", Timestamp: ts, Retention: ret}
	}
	if _, err := st.WriteEvents(ctx, []event.Event{ev("short", ts1, short)}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	pt := part{kindUsers, int8(storage.SubSystemUsers), sub, storage.Hour, periodOf(storage.Hour, false, hour)}
	table, where, args := pt.rows()
	st.sealHook = func() {
		st.sealHook = nil
		// The same user in the same hour, kept 30 days: n stays 1, the
		// row and its entry now live 30 days.
		if _, err := st.WriteEvents(ctx, []event.Event{ev("long", hour.Add(30*time.Minute), 30*24*time.Hour)}); err != nil {
			t.Error(err)
		}
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Error(err)
		}
		var ttl *int
		if err := st.s.Query("SELECT TTL(pack[5]) FROM "+table+" WHERE "+where+" AND slot = ?", append(args, packSlot(hour))...).Scan(&ttl); err != nil {
			t.Error(err)
		}
		t.Logf("the map entry's TTL after the second fold: %s", ttlText(ttl))
	}
	ok, err := st.sealPack(ctx, pt, packSlot(hour))
	if err != nil {
		t.Fatal(err)
	}
	_, _, exp, _ := packRow(t, st, pt, packSlot(hour))
	t.Logf("seal applied: %v; hour 5 sealed to expire in %d s", ok, exp[5]-time.Now().Unix())
	// Past the first event's expiry: the report's hour must still be the
	// hour row's n (1 user, the second event's).
	deadline := time.Now().Add(time.Minute)
	for time.Now().Unix() <= ts1.Add(short).Unix()+3 {
		if time.Now().After(deadline) {
			t.Fatal("the first event never expired")
		}
		time.Sleep(200 * time.Millisecond) // polling the clock, not waiting on the system
	}
	var n *int64
	var rowTTL *int
	if err := st.s.Query("SELECT n, TTL(n) FROM "+table+" WHERE "+where+" AND slot = ?", append(args, hour)...).Scan(&n, &rowTTL); err != nil {
		t.Fatal(err)
	}
	got := map[time.Time]uint64{}
	if err := st.UserEstimates(ctx, storage.UsersQuery{Scope: storage.SubSystemUsers, Key: sub, Res: storage.Hour, From: day, To: day.Add(24 * time.Hour)},
		func(s time.Time, est uint64) error { got[s] = est; return nil }); err != nil {
		t.Fatal(err)
	}
	if n == nil {
		t.Fatal("the hour row has no n")
	}
	if got[hour] != uint64(*n) {
		t.Fatalf("users of %v read from the pack: %d; the hour row's n: %d (TTL %s): the seal dropped an entry its row still holds", hour, got[hour], *n, ttlText(rowTTL))
	}
}

// Review: PackCountHours rewrites an entry with the value it has and a TTL
// a second or more shorter than the row's (pack.go: "expire no later than
// the row's n"). Between a seal's read and its write, the seal's condition
// (values only) still holds, and the seal keeps the longer expiry it read:
// the sealed entry outlives the map cell it replaced.
func TestReviewSealOutlivesAShortenedCell(t *testing.T) {
	t.Parallel() // its own keyspace and store; the package otherwise runs in turn
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	hour := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2).Add(7 * time.Hour)
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "a", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: hour.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	pt := part{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, hour)}
	table, where, args := pt.rows()
	var cellExp int64
	st.sealHook = func() {
		st.sealHook = nil
		if n, err := st.PackCountHours(ctx, storage.SubSystemTypes, sub, hour, hour.Add(time.Hour)); err != nil || n != 1 {
			t.Errorf("PackCountHours: %d, %v", n, err)
		}
		var ttl *int
		if err := st.s.Query("SELECT TTL(pack[7]) FROM "+table+" WHERE "+where+" AND slot = ?", append(args, packSlot(hour))...).Scan(&ttl); err != nil || ttl == nil {
			t.Errorf("TTL of the entry: %v, %v", ttl, err)
			return
		}
		cellExp = time.Now().Unix() + int64(*ttl) // no earlier than the cell's expiry
	}
	// PackCountHours rewrote the entry (its pack_write) between the
	// seal's read and its write: the seal loses, and the next one reads
	// the cell's shorter TTL.
	if ok, err := st.sealPack(ctx, pt, packSlot(hour)); err != nil || ok {
		t.Fatalf("a seal over an entry rewritten since its read: applied %v, %v", ok, err)
	}
	if ok, err := st.sealPack(ctx, pt, packSlot(hour)); err != nil || !ok {
		t.Fatalf("the next seal: %v, %v", ok, err)
	}
	_, _, exp, _ := packRow(t, st, pt, packSlot(hour))
	if exp[7] > cellExp {
		t.Fatalf("hour 7 sealed to expire at %d, %d s after the map cell it replaced (%d)", exp[7], exp[7]-cellExp, cellExp)
	}
}
