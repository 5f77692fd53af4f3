package cassandrastore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// BenchmarkCeiling measures, in one run, the workers' whole write path
// (claims, events, counts) against the storage's own ceiling: a raw gocql
// loop inserting the same two events tables' rows with the same batching
// (unlogged batches of one partition, batchRows rows) and concurrency
// (WriteConcurrency). Rounds interleave the targets; medians are reported.
//
//	VT_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' -bench Ceiling -benchtime 1x ./shared/storage/cassandrastore/
//
// VT_BENCH_COALESCE sets the driver's write coalescing (default the store's,
// 200µs, as workers are deployed; "0" sends each statement at once, as the
// reporter does: 5,979 against 7,812 events/s with one process on
// 2026-11-28). VT_BENCH_BATCH sets the batch size (default 2,000, the workers'). Batches
// of 6,000 (three times the events per Paxos round) gave the same ratio
// within this VM's spread: 0.50–0.63 against 0.47–0.50 (2026-11-26).
func BenchmarkCeiling(b *testing.B) {
	h := os.Getenv("VT_CASSANDRA_HOSTS")
	if h == "" {
		b.Skip("VT_CASSANDRA_HOSTS is not set")
	}
	hs := strings.Split(h, ",")
	name := fmt.Sprintf("vt_ceiling_%d", os.Getpid())
	if err := Migrate(context.Background(), hs, name, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		b.Fatal(err)
	}
	defer DropKeyspace(context.Background(), hs, name)
	var stmts atomic.Int64
	counter := &statementCounter{n: &stmts}
	open := func() *Store {
		cfg := DefaultConfig()
		cfg.Hosts, cfg.Keyspace, cfg.Observer = hs, name, counter
		if v := os.Getenv("VT_BENCH_COALESCE"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				b.Fatalf("VT_BENCH_COALESCE: %v", err)
			}
			cfg.WriteCoalesce = d
		}
		st, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	// Two stores are two worker processes: separate sessions and pools.
	stores := []*Store{open(), open()}
	defer stores[0].Close()
	defer stores[1].Close()

	const perRound, loops = 40_000, 2 // two consuming loops per process, as the workers binary runs
	batchSize := 2000                 // the workers' -batch-size
	if v, err := strconv.Atoi(os.Getenv("VT_BENCH_BATCH")); err == nil && v > 0 {
		batchSize = v
	}
	// VT_BENCH_USERS (default 0: no userId), VT_BENCH_SUBS (4) and
	// VT_BENCH_TYPES (8) shape the events: users cost sketches in the
	// manifests and the folds, per sub-system, partner and type.
	env := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
			return v
		}
		return def
	}
	users, nSubs, nTypes := env("VT_BENCH_USERS", 0), max(1, env("VT_BENCH_SUBS", 4)), max(1, env("VT_BENCH_TYPES", 8))
	p := tenant.NewID()
	subs := make([]string, nSubs)
	for i := range subs {
		subs[i] = tenant.NewID()
	}
	seq := 0
	mkBatch := func() []event.Event {
		evs := make([]event.Event, batchSize)
		ts := time.Now().UTC()
		for j := range evs {
			seq++
			evs[j] = event.Event{ID: fmt.Sprint("b", seq), PartnerID: p, SubSystemID: subs[j%nSubs], EventType: fmt.Sprint("t", j%nTypes),
				Timestamp: ts.Add(time.Duration(j) * time.Millisecond), ReceivedAt: ts, Metadata: []byte(`{"path":"/pricing","plan":"pro","value":42}`),
				IP: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", KeyID: "abcdefghijklm"}
			if users > 0 {
				// Every (sub-system, type) pair, and a user on each event.
				evs[j].EventType = fmt.Sprint("t", (j/nSubs)%nTypes)
				evs[j].UserID = fmt.Sprint("u", seq*7919%users)
			}
		}
		return evs
	}
	// run drives perRound events through write with the given writers, each
	// with `loops` concurrent batches, and returns events/s.
	run := func(writers []func(context.Context, []event.Event) error) float64 {
		var next atomic.Int64
		var mu sync.Mutex
		start := time.Now()
		var wg sync.WaitGroup
		for _, w := range writers {
			for l := 0; l < loops; l++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(int64(batchSize)) <= perRound {
						mu.Lock()
						batch := mkBatch()
						mu.Unlock()
						if err := w(context.Background(), batch); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		return perRound / time.Since(start).Seconds()
	}
	raw := func(st *Store) func(context.Context, []event.Event) error {
		return func(ctx context.Context, evs []event.Event) error { return rawInsert(ctx, st, evs) }
	}
	path := func(st *Store) func(context.Context, []event.Event) error {
		return func(ctx context.Context, evs []event.Event) error { _, err := st.WriteEvents(ctx, evs); return err }
	}
	var rawOne, pathOne, pathTwo []float64
	var perEvent float64
	for round := 0; round < 3; round++ {
		rawOne = append(rawOne, run([]func(context.Context, []event.Event) error{raw(stores[0])}))
		counter.on.Store(true)
		before := stmts.Load()
		pathOne = append(pathOne, run([]func(context.Context, []event.Event) error{path(stores[0])}))
		perEvent = float64(stmts.Load()-before) / perRound
		counter.on.Store(false)
		pathTwo = append(pathTwo, run([]func(context.Context, []event.Event) error{path(stores[0]), path(stores[1])}))
	}
	med := func(xs []float64) float64 { sort.Float64s(xs); return xs[len(xs)/2] }
	r, one, two := med(rawOne), med(pathOne), med(pathTwo)
	b.ReportMetric(r, "raw-events/s")
	b.ReportMetric(one, "path-1proc-events/s")
	b.ReportMetric(two, "path-2proc-events/s")
	b.ReportMetric(one/r, "ratio-1proc")
	b.ReportMetric(two/r, "ratio-2proc")
	b.ReportMetric(perEvent, "statements/event")
	fmt.Printf("\nCassandra write path vs raw loop (%d events/round, batches of %d, 3 rounds, medians)\n", perRound, batchSize)
	fmt.Printf("  raw loop (2 rows/event)      %8.0f events/s\n", r)
	fmt.Printf("  write path, 1 process        %8.0f events/s  ratio %.2f\n", one, one/r)
	fmt.Printf("  write path, 2 processes      %8.0f events/s  ratio %.2f\n", two, two/r)
	fmt.Printf("  statements per event          %8.3f (single statements and batch entries)\n", perEvent)
}

// rawInsert is the ceiling: the two events tables' rows, nothing else.
func rawInsert(ctx context.Context, st *Store, evs []event.Event) error {
	type part struct {
		stmt string
		rows [][]any
	}
	parts := map[string]*part{}
	add := func(k, stmt string, args ...any) {
		if parts[k] == nil {
			parts[k] = &part{stmt: stmt}
		}
		parts[k].rows = append(parts[k].rows, args)
	}
	for i := range evs {
		e := &evs[i]
		body, _ := json.Marshal(e)
		ts := e.Timestamp.UTC()
		minute, bucket := ts.Truncate(time.Minute), int8(storage.Bucket(e.ID))
		add(fmt.Sprint("p", minute.Unix(), bucket),
			"INSERT INTO events_by_partner_minute (partner_id, minute, bucket, ts, id, sub_system_id, event_type, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
			e.PartnerID, minute, bucket, ts, e.ID, e.SubSystemID, e.EventType, string(body), 86400)
		add(fmt.Sprint("s", e.SubSystemID, minute.Unix(), bucket),
			"INSERT INTO events_by_sub_system_minute (sub_system_id, minute, bucket, ts, id, partner_id, event_type) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
			e.SubSystemID, minute, bucket, ts, e.ID, e.PartnerID, e.EventType, 86400)
	}
	var fns []func(context.Context) error
	for _, pt := range parts {
		for i := 0; i < len(pt.rows); i += batchRows {
			chunk, stmt := pt.rows[i:min(i+batchRows, len(pt.rows))], pt.stmt
			fns = append(fns, func(ctx context.Context) error {
				b := st.s.Batch(gocql.UnloggedBatch)
				for _, args := range chunk {
					b.Query(stmt, args...)
				}
				return b.ExecContext(ctx)
			})
		}
	}
	return fanOut(ctx, st.cfg.WriteConcurrency, fns)
}

type statementCounter struct {
	n  *atomic.Int64
	on atomic.Bool
}

func (c *statementCounter) ObserveQuery(context.Context, gocql.ObservedQuery) {
	if c.on.Load() {
		c.n.Add(1)
	}
}

func (c *statementCounter) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	if c.on.Load() {
		c.n.Add(int64(len(b.Statements)))
	}
}

// BenchmarkSteady offers the write path a constant rate for a long run and
// reports, per minute, the events stored and the latency of Cassandra
// statements (as the driver observes them): the first and the last minute
// must match, since no statement's cost grows with what is stored.
//
//	VT_CASSANDRA_HOSTS=127.0.0.1:9042 VT_BENCH_STEADY=10m VT_BENCH_RATE=8000 \
//	  go test -run '^$' -bench Steady -benchtime 1x -timeout 30m ./shared/storage/cassandrastore/
func BenchmarkSteady(b *testing.B) {
	h, d := os.Getenv("VT_CASSANDRA_HOSTS"), os.Getenv("VT_BENCH_STEADY")
	if h == "" || d == "" {
		b.Skip("set VT_CASSANDRA_HOSTS and VT_BENCH_STEADY (a duration) to run")
	}
	total, err := time.ParseDuration(d)
	if err != nil {
		b.Fatal(err)
	}
	rate := 8000
	if v := os.Getenv("VT_BENCH_RATE"); v != "" {
		fmt.Sscan(v, &rate)
	}
	hs := strings.Split(h, ",")
	name := fmt.Sprintf("vt_steady_%d", os.Getpid())
	if err := Migrate(context.Background(), hs, name, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		b.Fatal(err)
	}
	defer DropKeyspace(context.Background(), hs, name)
	lat := &latencies{}
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Keyspace, cfg.Observer = hs, name, lat
	st, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	const batchSize = 2000
	p := tenant.NewID()
	subs := []string{tenant.NewID(), tenant.NewID(), tenant.NewID(), tenant.NewID()}
	batches := make(chan []event.Event, 4)
	var written atomic.Int64
	var wg sync.WaitGroup
	for l := 0; l < 2; l++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				if _, err := st.WriteEvents(context.Background(), batch); err != nil {
					b.Error(err)
				}
				written.Add(int64(len(batch)))
			}
		}()
	}
	type minute struct {
		events   int64
		p50, p99 time.Duration
		late     int // batches that could not be offered on time (the path fell behind)
	}
	var minutes []minute
	start := time.Now()
	every := time.Duration(float64(time.Second) * batchSize / float64(rate))
	next, seq, late := start, 0, 0
	lastMinute, lastWritten := start, int64(0)
	for time.Since(start) < total {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		evs := make([]event.Event, batchSize)
		ts := time.Now().UTC()
		for j := range evs {
			seq++
			evs[j] = event.Event{ID: fmt.Sprint("s", seq), PartnerID: p, SubSystemID: subs[j%4], EventType: fmt.Sprint("t", j%8),
				Timestamp: ts, Metadata: []byte(`{"path":"/pricing","plan":"pro","value":42}`)}
		}
		select {
		case batches <- evs:
		default:
			late++
			batches <- evs
		}
		next = next.Add(every)
		if time.Since(lastMinute) >= time.Minute {
			w := written.Load()
			p50, p99 := lat.take()
			minutes = append(minutes, minute{w - lastWritten, p50, p99, late})
			lastMinute, lastWritten, late = time.Now(), w, 0
		}
	}
	close(batches)
	wg.Wait()
	fmt.Printf("\nCassandra write path at a constant %d events/s for %s (batches of %d, 2 loops)\n", rate, total, batchSize)
	fmt.Printf("  minute  stored/s  statement p50  statement p99  batches offered late\n")
	for i, m := range minutes {
		fmt.Printf("  %6d  %8.0f  %13s  %13s  %d\n", i+1, float64(m.events)/60, m.p50.Round(10*time.Microsecond), m.p99.Round(10*time.Microsecond), m.late)
	}
	if n := len(minutes); n >= 2 {
		f, l := minutes[0], minutes[n-1]
		b.ReportMetric(float64(f.events)/60, "first-min-events/s")
		b.ReportMetric(float64(l.events)/60, "last-min-events/s")
		b.ReportMetric(float64(f.p99.Microseconds()), "first-min-p99-µs")
		b.ReportMetric(float64(l.p99.Microseconds()), "last-min-p99-µs")
	}
}

// latencies collects statement latencies as the driver observes them.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }
func (l *latencies) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	l.add(q.End.Sub(q.Start))
}
func (l *latencies) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	l.add(b.End.Sub(b.Start))
}

// take returns the p50 and p99 since the last take, and starts afresh.
func (l *latencies) take() (p50, p99 time.Duration) {
	l.mu.Lock()
	d := l.d
	l.d = nil
	l.mu.Unlock()
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[len(d)*99/100]
}
