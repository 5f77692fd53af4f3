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
	shape, err := schemaShape(ctx, s, ks)
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
// tables a test changed, or that cannot be emptied, is dropped instead.
// Its store must be closed first.
func (p *KeyspacePool) Put(ctx context.Context, ks string) error {
	if err := p.reset(ctx, ks); err != nil {
		p.mu.Lock()
		delete(p.made, ks)
		p.mu.Unlock()
		if derr := DropKeyspace(ctx, p.hosts, ks); derr != nil {
			return errors.Join(err, derr)
		}
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
	shape, err := schemaShape(ctx, s, ks)
	if err != nil {
		return err
	}
	p.mu.Lock()
	want := p.shape
	p.mu.Unlock()
	if shape != want {
		return fmt.Errorf("cassandrastore: keyspace %s: its tables were changed", ks)
	}
	tables := map[string]bool{}
	for _, line := range strings.Split(shape, "\n") {
		if t, _, ok := strings.Cut(line, " "); ok && t != "schema_migrations" {
			tables[t] = true
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(tables))
	sem := make(chan struct{}, 4)
	for t := range tables {
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

// schemaShape lists a keyspace's columns and their types, one "table
// column type" a line, sorted.
func schemaShape(ctx context.Context, s *gocql.Session, ks string) (string, error) {
	iter := s.Query("SELECT table_name, column_name, type FROM system_schema.columns WHERE keyspace_name = ?", ks).IterContext(ctx)
	var lines []string
	var t, c, typ string
	for iter.Scan(&t, &c, &typ) {
		lines = append(lines, t+" "+c+" "+typ)
	}
	if err := iter.Close(); err != nil {
		return "", fmt.Errorf("cassandrastore: read the columns of %s: %w", ks, err)
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("cassandrastore: keyspace %s has no tables", ks)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}
