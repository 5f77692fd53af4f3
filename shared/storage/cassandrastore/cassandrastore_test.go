package cassandrastore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/shared/storage/storagetest"
)

// hosts is set by `make test`, which starts a real Cassandra when none answers.
func hosts(t *testing.T) []string {
	h := os.Getenv("VT_CASSANDRA_HOSTS")
	if h == "" {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and sets it")
	}
	return strings.Split(h, ",")
}

var seq atomic.Int32

// open makes a fresh keyspace, migrated, for one test.
func open(t *testing.T) storage.Store {
	hs := hosts(t)
	ks := fmt.Sprintf("vt_test_%d_%d", os.Getpid(), seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cassandrastore.Migrate(ctx, hs, ks, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		t.Fatal(err)
	}
	cfg := cassandrastore.DefaultConfig()
	cfg.Hosts, cfg.Keyspace = hs, ks
	s, err := cassandrastore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		cassandrastore.DropKeyspace(context.Background(), hs, ks)
	})
	return s
}

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
