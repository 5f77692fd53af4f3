// Package backend opens the storage backend a service is configured for.
package backend

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
)

// Config selects and configures a backend.
type Config struct {
	Backend     string // cassandra | pebble
	PebbleDir   string
	Hosts       string
	Keyspace    string
	LocalDC     string
	Consistency string
	Replication string
	Retention   time.Duration
	Horizon     time.Duration
	WriteConc   int
	Coalesce    time.Duration
	Log         zerolog.Logger // the store's own lines (Cassandra: failed folds)
}

// ForWriters is c holding each Cassandra request up to the store's default
// (200µs) to send it with others: more throughput for a process writing
// many statements at once (workers), more latency for statements that
// wait on one another (a report, a key lookup), which send at once (0).
func (c Config) ForWriters() Config {
	c.Coalesce = cassandrastore.DefaultConfig().WriteCoalesce
	return c
}

// RegisterFlags adds the storage flags. -cassandra-write-coalesce
// defaults to c's own (0, or see ForWriters).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := cassandrastore.DefaultConfig()
	fs.StringVar(&c.Backend, "storage", "cassandra", "storage backend: cassandra, or pebble (one process only)")
	fs.StringVar(&c.PebbleDir, "pebble-dir", "./data/store", "Pebble directory (with -storage pebble)")
	fs.StringVar(&c.Hosts, "cassandra-hosts", strings.Join(d.Hosts, ","), "comma-separated Cassandra host:port list")
	fs.StringVar(&c.Keyspace, "cassandra-keyspace", d.Keyspace, "Cassandra keyspace")
	fs.StringVar(&c.LocalDC, "cassandra-local-dc", "", "Cassandra data centre to prefer (empty: any)")
	fs.StringVar(&c.Consistency, "cassandra-consistency", "LOCAL_QUORUM", "consistency of reads and writes")
	fs.StringVar(&c.Replication, "cassandra-replication", "{'class': 'SimpleStrategy', 'replication_factor': 1}", "keyspace replication, used by -migrate")
	fs.DurationVar(&c.Retention, "retention", d.Retention, "how long events and rollups are kept (Cassandra TTL)")
	fs.IntVar(&c.WriteConc, "cassandra-write-concurrency", d.WriteConcurrency, "concurrent writes per batch")
	fs.DurationVar(&c.Coalesce, "cassandra-write-coalesce", c.Coalesce, "how long the Cassandra driver holds a request to send it with others in one write: more throughput for many writes at once, more latency for statements that wait on one another (0: at once)")
	fs.DurationVar(&c.Horizon, "cassandra-dedup-horizon", d.DedupHorizon, "how long an event id stays claimed on Cassandra: the same id again within it is stored and counted once")
}

func (c Config) cassandra() (cassandrastore.Config, error) {
	cc := cassandrastore.DefaultConfig()
	cc.Hosts = nil
	for _, h := range strings.Split(c.Hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cc.Hosts = append(cc.Hosts, h)
		}
	}
	cc.Keyspace, cc.LocalDC, cc.Retention, cc.WriteConcurrency, cc.DedupHorizon = c.Keyspace, c.LocalDC, c.Retention, c.WriteConc, c.Horizon
	cc.Log, cc.WriteCoalesce = c.Log, c.Coalesce
	if err := cc.Consistency.UnmarshalText([]byte(c.Consistency)); err != nil {
		return cc, fmt.Errorf("invalid setting -cassandra-consistency (VT_CASSANDRA_CONSISTENCY): %w", err)
	}
	if !cassandrastore.ValidWriteCoalesce(cc.WriteCoalesce) {
		return cc, fmt.Errorf("invalid setting -cassandra-write-coalesce (VT_CASSANDRA_WRITE_COALESCE): %v; use 0 (send at once) up to 10ms", cc.WriteCoalesce)
	}
	if err := cc.Validate(); err != nil {
		return cc, fmt.Errorf("invalid storage setting: %w", err)
	}
	return cc, nil
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch c.Backend {
	case "pebble":
		if c.PebbleDir == "" {
			return errors.New("invalid setting -pebble-dir (VT_PEBBLE_DIR): empty")
		}
		return nil
	case "cassandra":
		_, err := c.cassandra()
		return err
	}
	return fmt.Errorf("invalid setting -storage (VT_STORAGE): %q; use cassandra or pebble", c.Backend)
}

// Open opens the backend.
func (c Config) Open() (storage.Store, error) {
	if c.Backend == "pebble" {
		s, err := pebblestore.Open(c.PebbleDir)
		if err != nil {
			return nil, err
		}
		return storage.Traced(s), nil
	}
	cc, err := c.cassandra()
	if err != nil {
		return nil, err
	}
	s, err := cassandrastore.Open(cc)
	if err != nil {
		return nil, err
	}
	return storage.Traced(s), nil
}

// Migrate applies the schema (Cassandra; Pebble needs none).
func (c Config) Migrate(ctx context.Context) error {
	if c.Backend != "cassandra" {
		return nil
	}
	cc, err := c.cassandra()
	if err != nil {
		return err
	}
	return cassandrastore.Migrate(ctx, cc.Hosts, cc.Keyspace, c.Replication)
}
