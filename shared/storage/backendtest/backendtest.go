// Package backendtest opens real stores for tests that must hold on every
// backend: Pebble always, Cassandra when `make test` started one
// (VT_CASSANDRA_HOSTS).
package backendtest

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
	"github.com/volcanion/tracking/shared/storage/pebblestore"
)

var seq atomic.Int32

// All returns an opener per backend. Each opened store is fresh (a temp
// dir, or a new migrated keyspace named after prefix) and closed, its
// keyspace dropped, when the test ends.
func All(t *testing.T, prefix string) map[string]func(t *testing.T) storage.Store {
	out := map[string]func(t *testing.T) storage.Store{
		"pebble": func(t *testing.T) storage.Store {
			s, err := pebblestore.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	if os.Getenv("VT_CASSANDRA_HOSTS") == "" {
		t.Log("VT_CASSANDRA_HOSTS is not set: Pebble only")
		return out
	}
	out["cassandra"] = func(t *testing.T) storage.Store { return Cassandra(t, prefix) }
	return out
}

// CassandraUpgraded is Cassandra with a keyspace as an upgrade across the
// half-hour, six-hour, half-past-hour and week resolutions leaves it, for every slot of the
// test: their slots are read summed from quarters and hours.
func CassandraUpgraded(t *testing.T, prefix string) storage.Store {
	return cassandra(t, prefix, true)
}

// Cassandra opens a fresh, migrated keyspace named after prefix on the
// Cassandra `make test` started, dropped when the test ends; without one
// (VT_CASSANDRA_HOSTS unset) the test is skipped.
func Cassandra(t *testing.T, prefix string) storage.Store { return cassandra(t, prefix, false) }

// CassandraWith is Cassandra with its configuration changed by set (a
// short retention, say).
func CassandraWith(t *testing.T, prefix string, set func(*cassandrastore.Config)) storage.Store {
	return cassandraWith(t, prefix, false, set, nil)
}

// CassandraTypedSince is Cassandra with a keyspace that keeps the users of
// each event type from since on, as an upgrade to the release that added
// them leaves it: a read of them from before answers errors.ErrUnsupported.
func CassandraTypedSince(t *testing.T, prefix string, since time.Time) storage.Store {
	return cassandraWith(t, prefix, false, nil, func(ctx context.Context, hosts []string, ks string) error {
		return cassandrastore.SetTypedUsersSince(ctx, hosts, ks, since)
	})
}

func cassandra(t *testing.T, prefix string, upgraded bool) storage.Store {
	return cassandraWith(t, prefix, upgraded, nil, nil)
}

func cassandraWith(t *testing.T, prefix string, upgraded bool, set func(*cassandrastore.Config), prepare func(ctx context.Context, hosts []string, ks string) error) storage.Store {
	h := os.Getenv("VT_CASSANDRA_HOSTS")
	if h == "" {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and sets it")
	}
	hosts := strings.Split(h, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ks, giveBack := keyspace(ctx, t, hosts, prefix)
	if upgraded {
		if err := cassandrastore.SetResolutionsSince(ctx, hosts, ks, time.Now().AddDate(1, 0, 0)); err != nil {
			t.Fatal(err)
		}
		// Nor were its hours packed (cassandrastore/pack.go): read as rows.
		if err := cassandrastore.SetPacksSince(ctx, hosts, ks, time.Now().AddDate(1, 0, 0)); err != nil {
			t.Fatal(err)
		}
		// Nor had it hours from half past or weeks: summed from half hours
		// and days.
		if err := cassandrastore.SetHalfPastSince(ctx, hosts, ks, time.Now().AddDate(1, 0, 0)); err != nil {
			t.Fatal(err)
		}
		if err := cassandrastore.SetWeeksSince(ctx, hosts, ks, time.Now().AddDate(1, 0, 0)); err != nil {
			t.Fatal(err)
		}
		// Nor the users of each event type: not known before.
		if err := cassandrastore.SetTypedUsersSince(ctx, hosts, ks, time.Now().AddDate(1, 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if prepare != nil {
		if err := prepare(ctx, hosts, ks); err != nil {
			t.Fatal(err)
		}
	}
	cfg := cassandrastore.DefaultConfig()
	cfg.Hosts, cfg.Keyspace = hosts, ks
	if set != nil {
		set(&cfg)
	}
	s, err := cassandrastore.Open(cfg)
	if err != nil {
		giveBack()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); giveBack() })
	return s
}

// pool lends keyspaces when the package's tests run through Main.
var pool *cassandrastore.KeyspacePool

// Main runs a package's tests with their Cassandra keyspaces pooled:
// emptied between tests rather than made and dropped for each (a tenth of
// the node's work), all dropped when the tests end. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(cassandrastore.WithPool(hostsOf(os.Getenv("VT_CASSANDRA_HOSTS")), "vt_pool", func(p *cassandrastore.KeyspacePool) int {
		pool = p
		return m.Run()
	}))
}

func hostsOf(env string) []string {
	if env == "" {
		return nil
	}
	return strings.Split(env, ",")
}

// keyspace is a migrated, empty keyspace for one test: lent by the pool
// under Main, else made here; giveBack empties or drops it, after the
// test's store is closed.
func keyspace(ctx context.Context, t *testing.T, hosts []string, prefix string) (string, func()) {
	t.Helper()
	if pool != nil {
		ks, err := pool.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ks, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := pool.Put(ctx, ks); err != nil {
				t.Logf("keyspace %s: %v", ks, err)
			}
		}
	}
	ks := fmt.Sprintf("vt_%s_%d_%d", prefix, os.Getpid(), seq.Add(1))
	if err := cassandrastore.Migrate(ctx, hosts, ks, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		t.Fatal(err)
	}
	return ks, func() { cassandrastore.DropKeyspace(context.Background(), hosts, ks) }
}
