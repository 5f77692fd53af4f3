package pebblestore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/storage/storagetest"
)

func open(t *testing.T) storage.Store {
	s, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storagetest.Run(t, open) }

// Data written before a close is there after a reopen.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.WriteEvents(context.Background(), []event.Event{{ID: "x", PartnerID: "p", SubSystemID: "s", EventType: "t", Timestamp: ts}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, _ := s.WriteEvents(context.Background(), []event.Event{{ID: "x", PartnerID: "p", SubSystemID: "s", EventType: "t", Timestamp: ts}}); r.Written != 0 {
		t.Fatalf("event written again after reopen")
	}
	if _, err := s.GetEvent(context.Background(), "p", "x"); err != nil {
		t.Fatal(err)
	}
}

// The duplicate check of a new id is answered by the Bloom filters, not by
// reading sstable blocks.
func TestNewIDsAnsweredByFilters(t *testing.T) {
	s, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	ts := time.Now().UTC()
	// New ids fall between stored ones, so only a filter can tell them apart.
	batch := func(suffix string) []event.Event {
		evs := make([]event.Event, 500)
		for i := range evs {
			evs[i] = event.Event{ID: fmt.Sprintf("id-%04d-%s", i, suffix), PartnerID: "p", SubSystemID: "s", EventType: "t", Timestamp: ts}
		}
		return evs
	}
	for b := 0; b < 4; b++ { // stored ids in sstables, compacted to the bottom level
		if _, err := s.WriteEvents(ctx, batch(fmt.Sprint("old", b))); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	before := s.FilterHits()
	if r, err := s.WriteEvents(ctx, batch("new")); err != nil || r.Written != 500 {
		t.Fatalf("%+v %v", r, err)
	}
	// A filter of 10 bits a key lets about 1% through.
	if hits := s.FilterHits() - before; hits < 480 {
		t.Fatalf("500 new ids checked against the stored ones: the filters spared %d block reads", hits)
	}
}

// A read view sees the writes before it, none after, in counts and users
// alike; the store itself reads live.
func TestReadView(t *testing.T) {
	ctx := context.Background()
	s := open(t).(*pebblestore.Store)
	at := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	write := func(id, user string) {
		t.Helper()
		if _, err := s.WriteEvents(ctx, []event.Event{{ID: id, PartnerID: "p", SubSystemID: "s", EventType: "view", UserID: user, Timestamp: at}}); err != nil {
			t.Fatal(err)
		}
	}
	figures := func(r storage.Reads) (n int64, sketch int) {
		t.Helper()
		slots, err := r.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: "s", Res: storage.Hour, From: at, To: at.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, sl := range slots {
			n += sl.Total
		}
		err = r.Users(ctx, storage.UsersQuery{Scope: storage.SubSystemUsers, Key: "s", Res: storage.Hour, From: at, To: at.Add(time.Hour)},
			func(_ time.Time, b []byte) error { sketch = len(b); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return n, sketch
	}
	write("a", "u1")
	view, release := s.ReadView()
	defer release()
	write("b", "u2")
	n, before := figures(view)
	if n != 1 {
		t.Fatalf("the view counts %d events, want the 1 written before it", n)
	}
	if m, after := figures(s); m != 2 || after <= before {
		t.Fatalf("the store read live: %d events, sketch %d bytes (the view's: %d)", m, after, before)
	}
}
