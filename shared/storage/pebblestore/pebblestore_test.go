package pebblestore_test

import (
	"context"
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
