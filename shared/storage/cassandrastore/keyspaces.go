package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// A KeyspacePool lends tests migrated keyspaces and takes them back emptied,
// as a fresh one would be. Making and dropping a keyspace of ~30 tables
// costs a node ~3 s of CPU, and each drop leaves tombstones in its schema
// tables that slow every later schema change; emptying one costs a tenth
// of that. It is for tests only: Put truncates every table.
type KeyspacePool struct {
	hosts       []string
	prefix      string
	replication string

	mu    sync.Mutex
	s     *gocql.Session
	free  []string
	made  map[string]bool
	n     int
	shape string // the columns of a freshly migrated keyspace
}

// NewKeyspacePool lends keyspaces named prefix_<pid>_<n> on hosts.
func NewKeyspacePool(hosts []string, prefix string) *KeyspacePool {
	return &KeyspacePool{hosts: hosts, prefix: prefix, made: map[string]bool{},
		replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}"}
}

// WithPool runs run (a TestMain's m.Run) with a pool of keyspaces on hosts
// (nil when hosts is empty), drops every keyspace it made once run
// returns, and returns run's exit code.
func WithPool(hosts []string, prefix string, run func(*KeyspacePool) int) int {
	if len(hosts) == 0 {
		return run(nil)
	}
	p := NewKeyspacePool(hosts, prefix)
	code := run(p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "dropping the tests' keyspaces:", err)
	}
	return code
}

// Get lends a migrated keyspace that holds nothing: one given back, else a
// new one.
func (p *KeyspacePool) Get(ctx context.Context) (string, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		ks := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return ks, nil
	}
	p.n++
	ks := fmt.Sprintf("%s_%d_%d", p.prefix, os.Getpid(), p.n)
	p.made[ks] = true
	p.mu.Unlock()
	if err := Migrate(ctx, p.hosts, ks, p.replication); err != nil {
		return "", err
	}
	s, err := p.session()
	if err != nil {
		return "", err
	}
	shape, _, err := schemaShape(ctx, s, ks)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	if p.shape == "" {
		p.shape = shape
	}
	p.mu.Unlock()
	return ks, nil
}

// Put empties a lent keyspace and keeps it for the next Get; one whose
// schema a test changed (a column, a table's options, a view, index or
// type added), or that cannot be emptied, is dropped instead.
// Its store must be closed first.
func (p *KeyspacePool) Put(ctx context.Context, ks string) error {
	if err := p.reset(ctx, ks); err != nil {
		// Not lent again; Close drops it if this drop fails.
		if derr := DropKeyspace(ctx, p.hosts, ks); derr != nil {
			return errors.Join(err, derr)
		}
		p.mu.Lock()
		delete(p.made, ks)
		p.mu.Unlock()
		return nil
	}
	p.mu.Lock()
	p.free = append(p.free, ks)
	p.mu.Unlock()
	return nil
}

// reset truncates every table but schema_migrations, forgets the
// migrations in Go and runs Migrate again: they write what a new keyspace
// starts with (the layout's dates), as of now.
func (p *KeyspacePool) reset(ctx context.Context, ks string) error {
	s, err := p.session()
	if err != nil {
		return err
	}
	shape, all, err := schemaShape(ctx, s, ks)
	if err != nil {
		return err
	}
	p.mu.Lock()
	want := p.shape
	p.mu.Unlock()
	if shape != want {
		return fmt.Errorf("cassandrastore: keyspace %s: its schema was changed", ks)
	}
	var tables []string
	for _, t := range all {
		if t != "schema_migrations" {
			tables = append(tables, t)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(tables))
	sem := make(chan struct{}, 4)
	for _, t := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.Query("TRUNCATE " + ks + "." + t).ExecContext(ctx); err != nil {
				errs <- fmt.Errorf("cassandrastore: truncate %s.%s: %w", ks, t, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var versions []int
	for _, step := range goSteps(time.Time{}) {
		versions = append(versions, step.version)
	}
	if err := s.Query("DELETE FROM "+ks+".schema_migrations WHERE version IN ?", versions).ExecContext(ctx); err != nil {
		return fmt.Errorf("cassandrastore: reset %s: %w", ks, err)
	}
	return Migrate(ctx, p.hosts, ks, p.replication)
}

// Close drops every keyspace the pool made, lent or not.
func (p *KeyspacePool) Close(ctx context.Context) error {
	p.mu.Lock()
	made := p.made
	p.made, p.free = map[string]bool{}, nil
	s := p.s
	p.s = nil
	p.mu.Unlock()
	var errs []error
	for ks := range made {
		if err := DropKeyspace(ctx, p.hosts, ks); err != nil {
			errs = append(errs, err)
		}
	}
	if s != nil {
		s.Close()
	}
	return errors.Join(errs...)
}

func (p *KeyspacePool) session() (*gocql.Session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.s != nil {
		return p.s, nil
	}
	c := gocql.NewCluster(p.hosts...)
	c.Consistency = gocql.Quorum
	c.Timeout = 30 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandrastore: connect %v: %w", p.hosts, err)
	}
	p.s = s
	return s, nil
}

// schemaShape describes a keyspace's tables (their columns: kind, position,
// order, type; their options) and counts its views, indexes and types, a
// line each, sorted; tables are the table names.
func schemaShape(ctx context.Context, s *gocql.Session, ks string) (shape string, tables []string, err error) {
	var lines []string
	iter := s.Query("SELECT table_name, column_name, kind, position, clustering_order, type FROM system_schema.columns WHERE keyspace_name = ?", ks).IterContext(ctx)
	var t, c, kind, order, typ string
	var pos int
	for iter.Scan(&t, &c, &kind, &pos, &order, &typ) {
		lines = append(lines, fmt.Sprint("column ", t, " ", c, " ", kind, " ", pos, " ", order, " ", typ))
	}
	if err := iter.Close(); err != nil {
		return "", nil, fmt.Errorf("cassandrastore: read the columns of %s: %w", ks, err)
	}
	iter = s.Query("SELECT table_name, default_time_to_live, gc_grace_seconds, compaction, compression, caching FROM system_schema.tables WHERE keyspace_name = ?", ks).IterContext(ctx)
	var ttl, grace int
	var compaction, compression, caching map[string]string
	for iter.Scan(&t, &ttl, &grace, &compaction, &compression, &caching) {
		tables = append(tables, t)
		lines = append(lines, fmt.Sprint("table ", t, " ", ttl, " ", grace, " ", compaction, " ", compression, " ", caching))
	}
	if err := iter.Close(); err != nil {
		return "", nil, fmt.Errorf("cassandrastore: read the tables of %s: %w", ks, err)
	}
	for _, other := range []string{"views", "indexes", "types", "functions", "aggregates"} {
		var n int
		if err := s.Query("SELECT count(*) FROM system_schema."+other+" WHERE keyspace_name = ?", ks).WithContext(ctx).Scan(&n); err != nil {
			return "", nil, fmt.Errorf("cassandrastore: read the %s of %s: %w", other, ks, err)
		}
		lines = append(lines, fmt.Sprint(other, " ", n))
	}
	if len(tables) == 0 {
		return "", nil, fmt.Errorf("cassandrastore: keyspace %s has no tables", ks)
	}
	sort.Strings(lines)
	sort.Strings(tables)
	return strings.Join(lines, "\n"), tables, nil
}
