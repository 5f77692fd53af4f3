package cassandrastore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/shared/storage/storagetest"
	"github.com/volcanion/tracking/shared/tenant"
)

// hosts is set by `make test`, which starts a real Cassandra when none answers.
func hosts(t *testing.T) []string {
	h := os.Getenv("VT_CASSANDRA_HOSTS")
	if h == "" {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and sets it")
	}
	return strings.Split(h, ",")
}

// open opens a store on a migrated keyspace of its own, empty.
func open(t *testing.T) storage.Store { return cassandrastore.OpenTestStore(t) }

func TestConformance(t *testing.T) { storagetest.Run(t, open) }

// Migrate twice is a no-op the second time.
func TestMigrateIdempotent(t *testing.T) {
	hs := hosts(t)
	ks := fmt.Sprintf("vt_test_%d_m", os.Getpid())
	defer cassandrastore.DropKeyspace(context.Background(), hs, ks)
	for i := 0; i < 2; i++ {
		if err := cassandrastore.Migrate(context.Background(), hs, ks, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	if err := cassandrastore.Migrate(context.Background(), hs, "Bad-Name", "{}"); err == nil {
		t.Fatal("bad keyspace name accepted")
	}
}

// An event is kept as long as its partner's retention says, counted from
// its own timestamp, and its counts outlive it by less than a quarter hour.
func TestRetentionTTL(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	p, sub := tenant.NewID(), tenant.NewID()
	if _, err := s.WriteEvents(ctx, []event.Event{
		{ID: "short", PartnerID: p, SubSystemID: sub, EventType: "t", Timestamp: ts, Retention: 2 * 24 * time.Hour},
		{ID: "default", PartnerID: p, SubSystemID: sub, EventType: "t", Timestamp: ts},
	}); err != nil {
		t.Fatal(err)
	}
	ttlOf := func(id string) int {
		var ttl int
		q := s.(*cassandrastore.Store).Session().Query("SELECT TTL(body) FROM events_by_partner_minute WHERE partner_id = ? AND minute = ? AND bucket = ? AND ts = ? AND id = ?",
			p, ts.Truncate(time.Minute), int8(storage.Bucket(id)), ts, id)
		if err := q.Scan(&ttl); err != nil {
			t.Fatal(err)
		}
		return ttl
	}
	if got := ttlOf("short"); got < 2*86400-3600-60 || got > 2*86400-3600 {
		t.Fatalf("TTL of a 2-day partner's event stamped an hour ago: %d s", got)
	}
	if err := s.(*cassandrastore.Store).FoldPending(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	var countTTL int
	if err := s.(*cassandrastore.Store).Session().Query("SELECT TTL(n) FROM totals WHERE kind = 0 AND a = 0 AND key = ? AND res = 1 AND period = ? LIMIT 1",
		sub, ts.Year()*10000+int(ts.Month())*100+ts.Day()).Scan(&countTTL); err != nil {
		t.Fatal(err)
	}
	if want := 400*86400 - 3600; countTTL < want-60 || countTTL > want+900 {
		t.Fatalf("TTL of the counts: %d s, want the longest event's plus less than a quarter hour (%d)", countTTL, want)
	}
	if got := ttlOf("default"); got < 399*86400 {
		t.Fatalf("TTL with the default retention: %d s", got)
	}
}
