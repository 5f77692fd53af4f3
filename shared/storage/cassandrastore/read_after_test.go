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

// A reader keeps a sub-system's partners and a partner's manifests for a
// moment (recentTTL), so a partner report's many reads share them; a
// writer in another process is then seen that much later. A read that asks
// for every write before an instant (storage.WithReadAfter: a report whose
// dataCompleteUntil comes from the bus read then) uses no read older than
// it: it counts what another process stored before, from a sub-system the
// reader had seen with no partner and no manifest.
func TestReadAfterSeesOtherWriters(t *testing.T) {
	was := recentTTL
	recentTTL = time.Hour // without ReadAfter, every read below would be served from the first
	t.Cleanup(func() { recentTTL = was })

	reader := openStore(t)
	reader.folder.close()
	cfg := reader.cfg
	writer, err := Open(cfg) // another process: its own session and reads
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	writer.folder.close() // the events stay in manifests, read through the partners
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	q := storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.QuarterHour, From: at, To: at.Add(time.Hour)}
	uq := storage.UsersQuery{Scope: storage.SubSystemUsers, Key: sub, Res: storage.Hour, From: at, To: at.Add(time.Hour)}
	pq := storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: storage.Hour, From: at, To: at.Add(time.Hour)}
	read := func(ctx context.Context) (sub, partner int64, users uint64) {
		t.Helper()
		for _, c := range []struct {
			q storage.CountsQuery
			n *int64
		}{{q, &sub}, {pq, &partner}} {
			slots, err := reader.Counts(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			for _, sl := range slots {
				*c.n += sl.Total
			}
		}
		var sk hll.Sketch
		if err := reader.Users(ctx, uq, func(_ time.Time, b []byte) error { return sk.MergeBinary(b) }); err != nil {
			t.Fatal(err)
		}
		return sub, partner, sk.Estimate()
	}
	if s, pn, u := read(ctx); s != 0 || pn != 0 || u != 0 {
		t.Fatalf("before any event: %d, %d, %d users", s, pn, u)
	}
	evs := make([]event.Event, 40)
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprint("ra-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			UserID: fmt.Sprint("u", i%10), Timestamp: at.Add(time.Duration(i) * time.Minute)}
	}
	if _, err := writer.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if s, pn, u := read(storage.WithReadAfter(ctx, time.Now())); s != 40 || pn != 40 || u != 10 {
		t.Fatalf("asked for the writes before now: %d events of the sub-system, %d of the partner, %d users; want 40, 40, 10", s, pn, u)
	}
	// Without it, the reads are served from those just made (which is what
	// the ones above had to get past): a second batch is not seen yet.
	more := make([]event.Event, 5)
	for i := range more {
		more[i] = event.Event{ID: fmt.Sprint("rb-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			UserID: "u0", Timestamp: at.Add(time.Duration(i) * time.Minute)}
	}
	if _, err := writer.WriteEvents(ctx, more); err != nil {
		t.Fatal(err)
	}
	if s, pn, _ := read(ctx); s != 40 || pn != 40 {
		t.Fatalf("served from the reads before: %d, %d; want 40, 40", s, pn)
	}
	if s, pn, _ := read(storage.WithReadAfter(ctx, time.Now())); s != 45 || pn != 45 {
		t.Fatalf("asked for the writes before now again: %d, %d; want 45, 45", s, pn)
	}
}
