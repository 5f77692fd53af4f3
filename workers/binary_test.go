package workers_test

import (
	"flag"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/workers"
)

// TestBinaryWriteCoalesce: the workers' Cassandra statements are held to go with others (many are written at once)
// unless -cassandra-write-coalesce says otherwise.
func TestBinaryWriteCoalesce(t *testing.T) {
	b := workers.NewBinary()
	fs := flag.NewFlagSet("workers", flag.ContinueOnError)
	b.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := cassandrastore.DefaultConfig().WriteCoalesce; b.Store.Coalesce != want {
		t.Fatalf("-cassandra-write-coalesce %v, want %v", b.Store.Coalesce, want)
	}
	if err := fs.Parse([]string{"-cassandra-write-coalesce", "100us"}); err != nil || b.Store.Coalesce != 100*time.Microsecond {
		t.Fatalf("set: %v, %v", b.Store.Coalesce, err)
	}
}
