// Package cassandrastore is the production storage backend. It passes the
// same conformance suite as the embedded Pebble backend (storagetest).
//
// Queries with arguments are prepared once per statement and cached by the
// driver; routing is token-aware, so a query goes to a replica of its
// partition; unlogged batches only ever hold rows of one partition; event
// writes are idempotent and marked so, so the driver may retry them; write
// fan-out is bounded by WriteConcurrency.
package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Config of the Cassandra backend.
type Config struct {
	Hosts            []string
	Keyspace         string
	LocalDC          string // "" routes to any DC
	Consistency      gocql.Consistency
	Timeout          time.Duration
	WriteConcurrency int
	// Retention is the TTL of events and their rollups.
	Retention time.Duration
	// DedupHorizon is how long an event id stays claimed: the same id
	// again within it is a duplicate (or a conflict), never a second event.
	DedupHorizon time.Duration
	// Log gets a line for each fold that fails (the zero Logger: none).
	Log zerolog.Logger
	// WriteCoalesce is how long the driver holds a request to send it with
	// others in one write (gocql's WriteCoalesceWaitTime); 0 sends each at
	// once. Workers write many statements at once and gain from it
	// (BenchmarkCeiling: 5,979 events/s at 0, 7,812 at 200µs); a report's
	// or a key lookup's statements wait on one another, so each hold adds
	// to its latency (sequential reports 10-40% faster at 0): every service
	// but the workers sends at once (docs/PERFORMANCE.md).
	WriteCoalesce time.Duration
	// Observer, if set, sees every query and batch (metrics, benchmarks).
	Observer interface {
		gocql.QueryObserver
		gocql.BatchObserver
	}
}

// DefaultConfig is a single local node.
func DefaultConfig() Config {
	return Config{Hosts: []string{"127.0.0.1:9042"}, Keyspace: "volcanion", Consistency: gocql.LocalQuorum,
		Timeout: 10 * time.Second, WriteConcurrency: 32, WriteCoalesce: 200 * time.Microsecond, Retention: 400 * 24 * time.Hour, DedupHorizon: 24 * time.Hour}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case len(c.Hosts) == 0:
		return errors.New("cassandrastore: at least one host is required")
	case !keyspaceRE.MatchString(c.Keyspace):
		return fmt.Errorf("cassandrastore: keyspace %q: use lower-case letters, digits and _", c.Keyspace)
	case c.Timeout <= 0:
		return errors.New("cassandrastore: the timeout must be positive")
	case c.WriteConcurrency < 1:
		return errors.New("cassandrastore: write concurrency must be at least 1")
	case c.Retention < time.Hour:
		return errors.New("cassandrastore: retention must be at least an hour")
	case !ValidWriteCoalesce(c.WriteCoalesce):
		return fmt.Errorf("cassandrastore: write coalescing %v: use 0 (send at once) up to %v", c.WriteCoalesce, maxWriteCoalesce)
	case c.DedupHorizon < 10*time.Minute:
		return errors.New("cassandrastore: the de-duplication horizon must be at least 10 minutes (it must outlast any redelivery)")
	}
	return nil
}

// maxWriteCoalesce bounds Config.WriteCoalesce: longer holds every request.
const maxWriteCoalesce = 10 * time.Millisecond

// ValidWriteCoalesce tells whether d may be Config.WriteCoalesce.
func ValidWriteCoalesce(d time.Duration) bool { return d >= 0 && d <= maxWriteCoalesce }

// Store is the Cassandra backend.
type Store struct {
	s      *gocql.Session
	cfg    Config
	folder *folder
	// subPartners caches sub-system -> partner, applied partner -> a floor
	// of each claim partition's applied (*[ClaimBuckets]int64).
	subPartners, applied sync.Map
	partnersRead         sync.Map // sub-system -> *partnersRead
	partnersWrote        sync.Map // sub-system -> when this store last noted a partner of it
	recentMu             sync.Mutex
	recent               map[string]*recentRead // partner -> its last manifests read
	recentBytes          int                    // see recentBytes
	recentHeld           atomic.Int64           // bytes of the reads in recent, and of those under way
	streamUntil          map[string]time.Time   // partner -> its reads stream until then
	// foldHook, when set, runs at each stage of a fold (tests stop or read there).
	foldHook func(stage string) error
	// foldRound: the most manifests of a claim partition one fold round
	// takes (foldRound; tests set fewer).
	foldRound int
	// partnersHook, when set, runs when a read of a sub-system's partners
	// has its answer and before it is kept (tests hold it there).
	partnersHook func(sub string)
	// since: half-hour and six-hour rows hold every event of the slots from
	// here on, earlier ones are summed (layout.go).
	since time.Time
	// packsSince: the hours' packs hold every hour from here on; earlier
	// hours are read as rows (pack.go).
	packsSince time.Time
	// halfPastSince: hours from half past (and their packs) hold every
	// event of the slots from here on, earlier ones are summed from half
	// hours (layout.go).
	halfPastSince time.Time
	// weekSince: weeks hold every event from here on, earlier ones are
	// summed from days (layout.go).
	weekSince time.Time
	// typedSince: the users of each event type are kept from here on, and
	// not known before (layout.go).
	typedSince time.Time
	// sealSince: readers seal ended days' packs from here on (seal.go);
	// sealing, sealSlots and seals are the seals under way.
	sealSince time.Time
	sealing   sync.Map // sealKey -> true
	sealSlots chan struct{}
	seals     sync.WaitGroup
	sealMu    sync.Mutex
	closed    bool // under sealMu
	// sealHook, when set, runs in a seal between its read and its write
	// (tests write there).
	sealHook func()
	// oneDC: the cluster has one data centre (dcsKnown: read; unions.go).
	dcsMu           sync.Mutex
	dcsKnown, oneDC bool
}

var _ storage.Store = (*Store)(nil)

// Open connects to the cluster. The schema must exist (see Migrate).
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cluster := gocql.NewCluster(cfg.Hosts...)
	cluster.Keyspace = cfg.Keyspace
	cluster.Consistency = cfg.Consistency
	cluster.SerialConsistency = gocql.LocalSerial
	cluster.Timeout = cfg.Timeout
	cluster.ConnectTimeout = cfg.Timeout
	cluster.WriteCoalesceWaitTime = cfg.WriteCoalesce
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	if cfg.Observer != nil {
		cluster.QueryObserver, cluster.BatchObserver = cfg.Observer, cfg.Observer
	}
	s, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandrastore: connect %v: %w", cfg.Hosts, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	// Since when each layout added after keyspaces held counts is complete.
	var marks [6]time.Time
	for i, name := range []string{resolutionsName, packsName, halfPastName, weeksName, typedSpansName, sealName} {
		if marks[i], err = readSince(ctx, s, name); err != nil {
			s.Close()
			return nil, err
		}
	}
	st := &Store{s: s, cfg: cfg, since: marks[0], packsSince: marks[1], halfPastSince: marks[2], weekSince: marks[3], typedSince: marks[4], sealSince: marks[5], recentBytes: recentBytes,
		sealSlots: make(chan struct{}, sealsAtOnce)}
	st.folder = newFolder(st)
	return st, nil
}

// Close stops folding and closes the session.
func (st *Store) Close() error {
	st.sealMu.Lock()
	st.closed = true
	st.sealMu.Unlock()
	st.folder.close()
	st.folder.finish(context.Background())
	st.seals.Wait()
	st.s.Close()
	return nil
}

// Retention is the partner's own, else the store's (Config.Retention, the
// -retention every process shares), as its events are written with
// (workers set Event.Retention from it).
func (st *Store) Retention(p tenant.Partner) time.Duration {
	if p.RetentionDays > 0 {
		return time.Duration(p.RetentionDays) * 24 * time.Hour
	}
	return st.cfg.Retention
}

// Ping runs a trivial query.
func (st *Store) Ping(ctx context.Context) error {
	var v string
	if err := st.s.Query("SELECT release_version FROM system.local").ScanContext(ctx, &v); err != nil {
		return fmt.Errorf("cassandrastore: ping: %w", err)
	}
	return nil
}

// write is an idempotent write (safe for the driver to retry).
func (st *Store) write(stmt string, args ...any) *gocql.Query {
	return st.s.Query(stmt, args...).Idempotent(true)
}

func notFound(err error) error {
	if errors.Is(err, gocql.ErrNotFound) {
		return storage.ErrNotFound
	}
	return err
}

// fanOut runs fns with at most n at once and returns the first error.
func fanOut(ctx context.Context, n int, fns []func(context.Context) error) error {
	if len(fns) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, n)
	errc := make(chan error, len(fns))
	for _, fn := range fns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errc <- ctx.Err()
			continue
		}
		go func() {
			defer func() { <-sem }()
			errc <- fn(ctx)
		}()
	}
	var first error
	for range fns {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// Session is the driver session (for tests and tools).
func (st *Store) Session() *gocql.Session { return st.s }
