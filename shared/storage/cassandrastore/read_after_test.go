package cassandrastore

import (
	"context"
	"fmt"
	"sync"
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
	// A page of raw events finds its minutes through the counts.
	page := storage.EventsQuery{PartnerID: p, SubSystemID: sub, EventType: "view", From: at, To: at.Add(time.Hour), Limit: 100}
	if got, err := reader.ListEvents(ctx, page); err != nil || len(got) != 0 {
		t.Fatalf("a page from the reads before: %d events (%v); want none yet", len(got), err)
	}
	if got, err := reader.ListEvents(storage.WithReadAfter(ctx, time.Now()), page); err != nil || len(got) != 40 {
		t.Fatalf("a page asked for the writes before now: %d events (%v), want 40", len(got), err)
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

// A read of a sub-system's partners that began before a partner was noted
// serves no later read, however late it finishes: not one of this store
// (which sees its own writes), and not one asking for the writes before an
// instant after the other store's write.
func TestPartnersReadInFlight(t *testing.T) {
	was := recentTTL
	recentTTL = time.Hour
	t.Cleanup(func() { recentTTL = was })
	st := openStore(t)
	st.folder.close()
	other, err := Open(st.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.folder.close()
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	for _, c := range []struct {
		name   string
		writer *Store
		ctx    func() context.Context // of the read after the write
	}{
		{"this store's own write", st, func() context.Context { return ctx }},
		{"another store's write", other, func() context.Context { return storage.WithReadAfter(ctx, time.Now()) }},
	} {
		p, sub := tenant.NewID(), tenant.NewID()
		q := storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: at, To: at.Add(time.Hour)}
		answered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		st.partnersHook = func(s string) {
			if s == sub {
				once.Do(func() { close(answered); <-release })
			}
		}
		done := make(chan error, 1)
		go func() { _, err := st.Counts(ctx, q); done <- err }() // finds no partner, then holds
		<-answered
		evs := make([]event.Event, 10)
		for i := range evs {
			evs[i] = event.Event{ID: fmt.Sprint(c.name, i), PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: at.Add(time.Duration(i) * time.Minute)}
		}
		if _, err := c.writer.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		readCtx := c.ctx()
		close(release) // the read from before the write is kept now
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st.partnersHook = nil
		slots, err := st.Counts(readCtx, q)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, sl := range slots {
			n += sl.Total
		}
		if n != 10 {
			t.Fatalf("after %s: %d of 10 events counted", c.name, n)
		}
	}
}
