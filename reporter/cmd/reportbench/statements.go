package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// statements tallies the Cassandra statements a report makes (-statements):
// which tables it reads, how many rows, and how long Cassandra took.
type statements struct {
	mu sync.Mutex
	on bool
	by map[string]*tally
}

type tally struct {
	n, rows int
	took    time.Duration
}

func (s *statements) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	s.add(q.Statement, q.Rows, q.End.Sub(q.Start))
}

func (s *statements) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	s.add("BATCH "+strings.Join(b.Statements, "; "), 0, b.End.Sub(b.Start))
}

func (s *statements) add(stmt string, rows int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.on {
		return
	}
	stmt = strings.Join(strings.Fields(stmt), " ")
	if len(stmt) > 110 {
		stmt = stmt[:110]
	}
	t := s.by[stmt]
	if t == nil {
		t = &tally{}
		s.by[stmt] = t
	}
	t.n++
	t.rows += rows
	t.took += d
}

func (s *statements) start() {
	s.mu.Lock()
	s.on, s.by = true, map[string]*tally{}
	s.mu.Unlock()
}

// stop prints what was seen over runs reports.
func (s *statements) stop(runs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	keys := make([]string, 0, len(s.by))
	for k := range s.by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.by[keys[i]].took > s.by[keys[j]].took })
	r := float64(runs)
	fmt.Printf("    %8s %8s %9s  statement (per report)\n", "calls", "rows", "ms (sum)")
	for _, k := range keys {
		t := s.by[k]
		fmt.Printf("    %8.1f %8.1f %9.2f  %s\n", float64(t.n)/r, float64(t.rows)/r, t.took.Seconds()*1000/r, k)
	}
}
