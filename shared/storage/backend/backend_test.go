package backend

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
)

func TestWriteCoalesceSetting(t *testing.T) {
	parse := func(t *testing.T, c Config, args ...string) Config {
		t.Helper()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := config.Parse(fs, args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// A writer's default is the store's; any other sends at once.
	for _, tc := range []struct {
		c    Config
		want time.Duration
	}{{Config{}.ForWriters(), cassandrastore.DefaultConfig().WriteCoalesce}, {Config{}, 0}} {
		cc, err := parse(t, tc.c).cassandra()
		if err != nil || cc.WriteCoalesce != tc.want {
			t.Fatalf("default: %v, %v; want %v", cc.WriteCoalesce, err, tc.want)
		}
	}
	if cassandrastore.DefaultConfig().WriteCoalesce == 0 {
		t.Fatal("the store's default sends each request at once: writers lose a fifth of their throughput (BenchmarkCeiling)")
	}
	t.Setenv("VT_CASSANDRA_WRITE_COALESCE", "50us")
	if cc, err := parse(t, Config{}).cassandra(); err != nil || cc.WriteCoalesce != 50*time.Microsecond {
		t.Fatalf("from the environment: %v, %v", cc.WriteCoalesce, err)
	}
	for _, bad := range []string{"-1ms", "1s"} {
		_, err := parse(t, Config{}, "-cassandra-write-coalesce", bad).cassandra()
		if err == nil || !strings.Contains(err.Error(), "-cassandra-write-coalesce") || !strings.Contains(err.Error(), "VT_CASSANDRA_WRITE_COALESCE") {
			t.Errorf("%s: %v, want an error naming the setting", bad, err)
		}
	}
}
