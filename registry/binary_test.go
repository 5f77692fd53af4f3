package registry_test

import (
	"flag"
	"testing"
	"time"

	"github.com/volcanion/tracking/registry"
)

// TestBinaryWriteCoalesce: the registry's Cassandra statements are sent at once (a lookup waits on each)
// unless -cassandra-write-coalesce says otherwise.
func TestBinaryWriteCoalesce(t *testing.T) {
	b := registry.NewBinary()
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	b.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(0); b.Store.Coalesce != want {
		t.Fatalf("-cassandra-write-coalesce %v, want %v", b.Store.Coalesce, want)
	}
	if err := fs.Parse([]string{"-cassandra-write-coalesce", "100us"}); err != nil || b.Store.Coalesce != 100*time.Microsecond {
		t.Fatalf("set: %v, %v", b.Store.Coalesce, err)
	}
}
