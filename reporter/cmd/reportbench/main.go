// Command reportbench loads a report data set into a backend and measures
// the reports over it (issue 10, point 6): by default 10,000,000 events
// over 30 days, one partner, 20 sub-systems, 50 event types, 20,000 users,
// with late events and duplicates. The load is bounded in time and resumes
// where it stopped; a complete load is reused.
//
//	go run ./reporter/cmd/reportbench -backend pebble
//	go run ./reporter/cmd/reportbench -backend cassandra -cassandra-hosts 127.0.0.1:9042
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/tenant"
)

type options struct {
	backend, dir, hosts, keyspace, redis, out  string
	events, days, subs, types, users           int
	runs, clients, writers, warmup, warmRounds int
	maxConcurrent                              int
	gcPercent                                  int
	loadFor                                    time.Duration
	profile, only                              string
	statements, cachedOnly, firstCalls         bool
	seal                                       bool
	settleWith                                 string
	cpuOf                                      int
	coalesce, nearEvery                        time.Duration
	observer                                   *statements
}

// progress is what a load has done, kept beside the data.
type progress struct {
	Events, Days, Subs, Types, Users int
	Start                            time.Time // the first day of the data (UTC midnight)
	Loaded                           int       // events written so far, in generation order
	Done                             bool
	LoadSeconds                      float64
	// SketchForm 5: every sketch row is in this release's form (nibbles,
	// with its estimate beside it, through marked) and every hour is in
	// its day's pack; 6: hours from half past are kept; 7: weeks too. A
	// data set loaded before is rewritten once (Cassandra; Pebble
	// recounts itself).
	SketchForm int
	// Settled: on Cassandra, the reports read the data set until their
	// reads sealed no more packs of ended days, and then -settle-with ran
	// (a major compaction); on Pebble, one full compaction.
	Settled bool
}

const sketchForm = 7

const partnerID = "01900000-0000-7000-8000-0000000000b1"

func subID(i int) string { return fmt.Sprintf("01900000-0000-7000-8000-%012d", 1000+i) }

func main() {
	var o options
	flag.StringVar(&o.backend, "backend", "pebble", "pebble or cassandra")
	flag.StringVar(&o.dir, "dir", "data/bench/reports", "where the Pebble data and the load's progress files are kept")
	flag.StringVar(&o.hosts, "cassandra-hosts", "127.0.0.1:9042", "Cassandra contact points")
	flag.StringVar(&o.keyspace, "cassandra-keyspace", "vt_bench_reports", "keyspace of the data set")
	flag.StringVar(&o.redis, "redis-url", "", "Redis of the cached runs on Cassandra (empty: the in-process cache)")
	flag.StringVar(&o.out, "out", "data/bench/reports.json", "results file (one entry per backend)")
	flag.IntVar(&o.events, "events", 10_000_000, "events in the data set")
	flag.IntVar(&o.days, "days", 30, "days they span")
	flag.IntVar(&o.subs, "sub-systems", 20, "sub-systems of the partner")
	flag.IntVar(&o.types, "event-types", 50, "event types")
	flag.IntVar(&o.users, "users", 20_000, "distinct users")
	flag.IntVar(&o.runs, "runs", 30, "runs of each query, per client")
	flag.IntVar(&o.clients, "clients", 8, "concurrent clients of the concurrent runs")
	flag.IntVar(&o.warmup, "warmup", 10, "uncounted runs of each query before its uncached runs (a database's JIT and caches warm, as in a system that has been running)")
	flag.IntVar(&o.warmRounds, "warm-rounds", -1, "uncounted rounds of every query, each its runs with the concurrent clients, before any is measured (default: 8 on cassandra, whose JIT cut its CPU a report by half over the first rounds after a start, and whose first run after four still missed twice of twice (docs/PERFORMANCE.md, session 32); 0 on pebble and with -cached-only)")
	flag.IntVar(&o.gcPercent, "gc-percent", -1, "the garbage collector's target, as GOGC (GOGC, when set, wins; default: as deployed, Go's 100 on pebble (the all-in-one), the reporter's -gc-percent on cassandra)")
	flag.IntVar(&o.maxConcurrent, "max-concurrent", -1, "reports computed at once (the reporter's -max-concurrent-reports; 0: no bound; default: as deployed, the cores on pebble (the all-in-one), no bound on cassandra)")
	flag.IntVar(&o.writers, "writers", 0, "concurrent writers of the load (0: 1 on Pebble, 6 on Cassandra)")
	flag.DurationVar(&o.loadFor, "load-for", 90*time.Minute, "longest a load runs; a later run resumes it")
	flag.StringVar(&o.profile, "profile", "", "directory for a CPU profile of each query's uncached sequential runs")
	flag.StringVar(&o.only, "only", "", "run only the queries whose name contains this")
	flag.IntVar(&o.cpuOf, "cpu-of", 0, "pid of another process whose CPU per report is printed too (the Cassandra JVM: its pid file is in its data directory)")
	flag.BoolVar(&o.cachedOnly, "cached-only", false, "measure the cached runs only")
	flag.DurationVar(&o.coalesce, "cassandra-write-coalesce", -1, "on cassandra, how long the reports' driver holds a request to send it with others (default: the reporter binary's)")
	flag.DurationVar(&o.nearEvery, "near-check-every", reporter.DefaultNearCheckEvery, "the cached runs' reporter -near-check-every: how long a copy found current in Redis is sent without asking again (0: ask on every hit)")
	flag.BoolVar(&o.firstCalls, "first-calls", true, "on cassandra, also time each report's first call of its range (what the store keeps of a range once read forgotten before each, untimed)")
	flag.BoolVar(&o.statements, "statements", false, "on cassandra, print the statements of each query's uncached sequential runs")
	flag.StringVar(&o.settleWith, "settle-with", "", "on cassandra, a shell command run once after the load, when the reports' reads have sealed every pack of an ended day they read, before any measurement: the data set as a node holds it after time (make bench-reports: nodetool flush and compact; the progress file records it)")
	flag.BoolVar(&o.seal, "seal", true, "on cassandra, let reads seal ended days' packs from now on (the layout mark Migrate sets a day ahead in a keyspace holding data; false: never, for a comparison)")
	flag.Parse()
	if c := (reporter.Config{NearCheckEvery: o.nearEvery}); c.Validate() != nil {
		fmt.Fprintln(os.Stderr, "reportbench:", c.Validate())
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "reportbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	var store storage.Store
	var cass *cassandrastore.Store
	var cassCfg cassandrastore.Config
	switch o.backend {
	case "pebble":
		s, err := pebblestore.Open(filepath.Join(o.dir, "pebble"))
		if err != nil {
			return err
		}
		store = s
		if o.writers == 0 {
			o.writers = 1
		}
	case "cassandra":
		hosts := strings.Split(o.hosts, ",")
		if err := cassandrastore.Migrate(ctx, hosts, o.keyspace, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
			return err
		}
		// Every reporter of this keyspace is this one: no earlier release
		// would read a sealed day as empty.
		sealSince := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		if o.seal {
			sealSince = time.Unix(0, 0)
		}
		if err := cassandrastore.SetSealSince(ctx, hosts, o.keyspace, sealSince); err != nil {
			return err
		}
		cfg := cassandrastore.DefaultConfig()
		cfg.Hosts, cfg.Keyspace = hosts, o.keyspace
		if o.statements {
			o.observer = &statements{}
			cfg.Observer = o.observer
		}
		s, err := cassandrastore.Open(cfg)
		if err != nil {
			return err
		}
		store, cass, cassCfg = s, s, cfg
		if o.writers == 0 {
			o.writers = 6
		}
	default:
		return fmt.Errorf("-backend: %q is neither pebble nor cassandra", o.backend)
	}
	p, err := load(ctx, o, store, cass)
	if err != nil {
		store.Close()
		return err
	}
	if cass != nil {
		// Again: the layout (since when hours are packed) is read at Open,
		// and load may have moved it. The load wrote as workers do; the
		// reports read as the reporter binary does.
		store.Close()
		cassCfg.WriteCoalesce = reporter.NewBinary().Store.Coalesce
		if o.coalesce >= 0 {
			cassCfg.WriteCoalesce = o.coalesce
		}
		if store, err = cassandrastore.Open(cassCfg); err != nil {
			return err
		}
		// Not without sealing: -seal=false measures the packs as maps, and a
		// data set settled so would be measured unsealed later too.
		if o.settleWith != "" && o.seal && !p.Settled {
			if store, err = settle(ctx, o, store, cassCfg, &p); err != nil {
				return err
			}
		}
	}
	if ps, ok := store.(*pebblestore.Store); ok && !p.Settled {
		if err := settlePebble(o, ps, &p); err != nil {
			store.Close()
			return err
		}
	}
	defer store.Close()
	return measure(ctx, o, store, p)
}

// settlePebble brings a loaded Pebble data set to the state a store holds
// it in after time, once: compacted down to its bottom level (a load
// leaves its last hours' tables in the upper levels, and their background
// compaction would share the cores with the measured reports).
func settlePebble(o options, ps *pebblestore.Store, p *progress) error {
	fmt.Println("settling the data set: one full compaction")
	began := time.Now()
	if err := ps.Flush(); err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	fmt.Printf("settled in %.0f s\n", time.Since(began).Seconds())
	p.Settled = true
	b, _ := json.MarshalIndent(p, "", "  ")
	return os.WriteFile(progressFile(o), b, 0o644)
}

// settle brings a loaded data set to the state a node holds it in after
// time, once: the reports read it until their reads seal no more packs of
// ended days (a process seals at most two at once and skips the others,
// so one read is not enough), then o.settleWith runs (a major compaction:
// the load left many sstables, and a partition read checks each). It
// returns the store opened again.
func settle(ctx context.Context, o options, store storage.Store, cfg cassandrastore.Config, p *progress) (storage.Store, error) {
	fmt.Println("settling the data set: the reports read until no pack is left to seal, then", o.settleWith)
	for round := 1; ; round++ {
		before, err := sealsSoFar()
		if err != nil {
			store.Close()
			return nil, err
		}
		r := reporter.New(store, zerolog.Nop())
		for _, q := range reportQueries(o, *p) {
			if err := q.call(ctx, r); err != nil {
				store.Close()
				return nil, fmt.Errorf("settle: %s: %w", q.name, err)
			}
		}
		store.Close() // waits for the seals under way
		after, err := sealsSoFar()
		if err != nil {
			return nil, err
		}
		if after == before {
			fmt.Printf("  %d rounds of reads, %.0f packs sealed\n", round, after)
			break // the store is closed
		}
		if round == maxSettleRounds {
			return nil, fmt.Errorf("settle: the reads still sealed packs after %d rounds", round)
		}
		if store, err = cassandrastore.Open(cfg); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", o.settleWith)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("-settle-with: %w", err)
	}
	fmt.Printf("settled in %.0f s\n", time.Since(began).Seconds())
	p.Settled = true
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := os.WriteFile(progressFile(o), b, 0o644); err != nil {
		return nil, err
	}
	return cassandrastore.Open(cfg)
}

// maxSettleRounds bounds settle's rounds of reads (a round seals a few
// packs; the reports read some 60 hour packs of each kind).
const maxSettleRounds = 500

// sealsSoFar is this process's count of packs sealed
// (trk_storage_pack_seals_total).
func sealsSoFar() (float64, error) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == "trk_storage_pack_seals_total" {
			return mf.GetMetric()[0].GetCounter().GetValue(), nil
		}
	}
	return 0, errors.New("settle: no metric trk_storage_pack_seals_total")
}

// generator makes the data set, the same every time.
type generator struct {
	o        options
	start    time.Time
	typeCDF  []float64
	lateEach int // one event in lateEach is late
	dupEach  int // one event in dupEach repeats an earlier one
}

func newGenerator(o options, start time.Time) *generator {
	g := &generator{o: o, start: start, lateEach: 50, dupEach: 200}
	// Event types by a Zipf-like weight, so top lists mean something.
	var sum float64
	for i := range o.types {
		w := 1 / math.Pow(float64(i+1), 0.8)
		sum += w
		g.typeCDF = append(g.typeCDF, sum)
	}
	for i := range g.typeCDF {
		g.typeCDF[i] /= sum
	}
	return g
}

// event i, in time order (bar the late ones); a duplicate is event j < i again.
func (g *generator) event(i int) event.Event {
	rng := rand.New(rand.NewPCG(uint64(i), 42))
	if i > 0 && i%g.dupEach == 0 {
		return g.event(rng.IntN(i))
	}
	span := time.Duration(g.o.days) * 24 * time.Hour
	ts := g.start.Add(time.Duration(float64(span) * float64(i) / float64(g.o.events))).Add(time.Duration(rng.IntN(60)) * time.Second)
	if i%g.lateEach == 7 {
		ts = ts.Add(-time.Duration(rng.IntN(72*60)) * time.Minute) // up to 3 days late
		if ts.Before(g.start) {
			ts = g.start
		}
	}
	t := sort.SearchFloat64s(g.typeCDF, rng.Float64())
	e := event.Event{ID: fmt.Sprintf("ev-%09d", i), PartnerID: partnerID, SubSystemID: subID(rng.IntN(g.o.subs)),
		EventType: fmt.Sprintf("type-%02d", min(t, g.o.types-1)), Timestamp: ts, ReceivedAt: ts,
		Metadata: json.RawMessage(fmt.Sprintf(`{"page":"/p/%d","value":%d}`, rng.IntN(500), rng.IntN(10000)))}
	u := rng.IntN(g.o.users)
	if u%10 < 7 {
		e.UserID = fmt.Sprintf("user-%05d", u)
	} else {
		e.AnonymousID = fmt.Sprintf("anon-%05d", u)
	}
	return e
}

func progressFile(o options) string {
	name := "progress-pebble.json"
	if o.backend == "cassandra" {
		name = "progress-cassandra-" + o.keyspace + ".json"
	}
	return filepath.Join(o.dir, name)
}

func load(ctx context.Context, o options, store storage.Store, cass *cassandrastore.Store) (progress, error) {
	var p progress
	if b, err := os.ReadFile(progressFile(o)); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return p, fmt.Errorf("%s: %w", progressFile(o), err)
		}
		if p.Events != o.events || p.Days != o.days || p.Subs != o.subs || p.Types != o.types || p.Users != o.users {
			return p, fmt.Errorf("%s holds another data set (%d events); remove it and the data to load this one", progressFile(o), p.Events)
		}
	} else {
		p = progress{Events: o.events, Days: o.days, Subs: o.subs, Types: o.types, Users: o.users,
			Start: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -o.days)}
	}
	if p.Done {
		fmt.Printf("reusing the %s data set: %d events from %s (loaded in %.0f s)\n", o.backend, p.Events, p.Start.Format(time.DateOnly), p.LoadSeconds)
		if cass != nil && p.SketchForm < sketchForm {
			if p.SketchForm < 5 {
				if err := reencode(ctx, o, cass, p); err != nil {
					return p, err
				}
			}
			if p.SketchForm < 6 {
				if err := derive(ctx, o, cass, p, storage.HalfPastHour, cassandrastore.SetHalfPastSince); err != nil {
					return p, err
				}
			}
			if err := derive(ctx, o, cass, p, storage.Week, cassandrastore.SetWeeksSince); err != nil {
				return p, err
			}
			p.SketchForm, p.Settled = sketchForm, false // rewritten: settle again
			b, _ := json.MarshalIndent(p, "", "  ")
			return p, os.WriteFile(progressFile(o), b, 0o644)
		}
		return p, nil
	}
	if err := createTenants(ctx, store, o); err != nil {
		return p, err
	}
	g := newGenerator(o, p.Start)
	deadline := time.Now().Add(o.loadFor)
	began, before, first := time.Now(), p.LoadSeconds, p.Loaded
	const batch = 2000
	save := func() error {
		b, _ := json.MarshalIndent(p, "", "  ")
		return os.WriteFile(progressFile(o), b, 0o644)
	}
	fmt.Printf("loading %d events into %s from event %d (%d writers, at most %s)\n", o.events, o.backend, p.Loaded, o.writers, o.loadFor)
	for p.Loaded < o.events {
		if time.Now().After(deadline) {
			p.LoadSeconds = before + time.Since(began).Seconds()
			if err := save(); err != nil {
				return p, err
			}
			return p, fmt.Errorf("the load stopped after %s at %d of %d events; run again to resume", o.loadFor, p.Loaded, o.events)
		}
		// A round: writers batches in parallel.
		var wg sync.WaitGroup
		errs := make([]error, o.writers)
		for w := range o.writers {
			from := p.Loaded + w*batch
			if from >= o.events {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs := make([]event.Event, 0, batch)
				for i := from; i < min(from+batch, o.events); i++ {
					evs = append(evs, g.event(i))
				}
				// Retried as the workers retry: a write is idempotent.
				for attempt := range 6 {
					if _, errs[w] = store.WriteEvents(ctx, evs); errs[w] == nil {
						break
					}
					time.Sleep(time.Duration(1+attempt) * time.Second)
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return p, err
		}
		p.Loaded = min(p.Loaded+o.writers*batch, o.events)
		p.LoadSeconds = before + time.Since(began).Seconds()
		if p.Loaded%(100*batch) < o.writers*batch {
			rate := float64(p.Loaded-first) / time.Since(began).Seconds()
			fmt.Printf("  %d events (%.0f/s this run)\n", p.Loaded, rate)
			if err := save(); err != nil {
				return p, err
			}
		}
	}
	if cass != nil {
		// Fold what the load wrote, as a running system would have by now.
		fmt.Println("folding the counts")
		if err := cass.FoldPartner(ctx, partnerID, time.Now()); err != nil {
			// Manifests not folded are still counted, only slower to read.
			fmt.Fprintf(os.Stderr, "the counts were not all folded (they read slower): %v\n", err)
		}
	}
	if cass != nil && first > 0 { // resumed: rows from before may be in an older form
		if err := reencode(ctx, o, cass, p); err != nil {
			return p, err
		}
	}
	p.Done, p.SketchForm = true, sketchForm
	p.LoadSeconds = before + time.Since(began).Seconds()
	fmt.Printf("loaded %d events in %.0f s\n", o.events, time.Since(began).Seconds())
	return p, save()
}

// reencode rewrites the data set's sketches that an older release stored
// a byte a register or without their estimates, so the reports read what
// this release stores.
func reencode(ctx context.Context, o options, cass *cassandrastore.Store, p progress) error {
	from, to := p.Start.AddDate(0, 0, -4), p.Start.AddDate(0, 0, p.Days+1) // late events reach 3 days back
	began := time.Now()
	keys := []struct {
		scope storage.UserScope
		key   string
	}{{storage.PartnerUsers, partnerID}}
	for i := range o.subs {
		keys = append(keys, struct {
			scope storage.UserScope
			key   string
		}{storage.SubSystemUsers, subID(i)})
	}
	n, err := fourAtOnce(len(keys), func(i int) (int, error) {
		n := 0
		// Not minutes: no report of the benchmark reads them (a minute
		// series without estimates reads the sketches).
		for _, res := range storage.Resolutions[1:] {
			m, err := cass.ReencodeUsers(ctx, keys[i].scope, keys[i].key, res, from, to)
			if n += m; err != nil {
				return n, err
			}
		}
		return n, nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("rewrote %d sketches in this release's form in %.0f s\n", n, time.Since(began).Seconds())
	return packHours(ctx, o, cass, from, to)
}

// fourAtOnce calls fn for each of n keys, four at once (a row at a time,
// a conditional write each), and returns the sum of what they did and
// the first error.
func fourAtOnce(n int, fn func(i int) (int, error)) (int, error) {
	var mu sync.Mutex
	var first error
	sum := 0
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				m, err := fn(i)
				mu.Lock()
				sum += m
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return sum, first
}

// derive writes the data set's slots of res (hours from half past,
// weeks), which a release before did not keep, from their tiles; then
// records that they are kept from the start.
func derive(ctx context.Context, o options, cass *cassandrastore.Store, p progress, res storage.Res, setSince func(context.Context, []string, string, time.Time) error) error {
	from, to := p.Start.AddDate(0, 0, -4), p.Start.AddDate(0, 0, p.Days+1) // late events reach 3 days back
	began := time.Now()
	n, err := cass.DeriveSlots(ctx, partnerID, res, from, to)
	if err != nil {
		return err
	}
	if err := setSince(ctx, strings.Split(o.hosts, ","), o.keyspace, time.Unix(0, 0)); err != nil {
		return err
	}
	fmt.Printf("wrote %d slots of %v in %.0f s\n", n, res, time.Since(began).Seconds())
	return nil
}

// packHours packs every hour of the data set, then records that packs
// hold every hour.
func packHours(ctx context.Context, o options, cass *cassandrastore.Store, from, to time.Time) error {
	began := time.Now()
	type key struct {
		users bool
		a     int8
		key   string
	}
	keys := []key{{false, int8(storage.PartnerSubSystems), partnerID}, {false, int8(storage.PartnerTypes), partnerID}, {true, int8(storage.PartnerUsers), partnerID}}
	for i := range o.subs {
		keys = append(keys, key{false, int8(storage.SubSystemTypes), subID(i)}, key{true, int8(storage.SubSystemUsers), subID(i)})
	}
	n, err := fourAtOnce(len(keys), func(i int) (int, error) {
		if k := keys[i]; k.users {
			return cass.PackUserHours(ctx, storage.UserScope(k.a), k.key, from, to)
		}
		return cass.PackCountHours(ctx, storage.Rollup(keys[i].a), keys[i].key, from, to)
	})
	if err != nil {
		return err
	}
	if err := cassandrastore.SetPacksSince(ctx, strings.Split(o.hosts, ","), o.keyspace, time.Unix(0, 0)); err != nil {
		return err
	}
	fmt.Printf("packed %d hours in %.0f s\n", n, time.Since(began).Seconds())
	return nil
}

func createTenants(ctx context.Context, store storage.Store, o options) error {
	now := time.Now().UTC()
	err := store.CreatePartner(ctx, tenant.Partner{ID: partnerID, Code: "bench", Name: "Bench", Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1})
	if err != nil && !errors.Is(err, storage.ErrExists) && !errors.Is(err, storage.ErrCodeTaken) {
		return err
	}
	for i := range o.subs {
		err := store.CreateSubSystem(ctx, tenant.SubSystem{ID: subID(i), PartnerID: partnerID, Code: fmt.Sprintf("sub-%02d", i),
			Name: fmt.Sprintf("Sub %02d", i), Status: tenant.Active, CreatedAt: now, UpdatedAt: now, Version: 1})
		if err != nil && !errors.Is(err, storage.ErrExists) && !errors.Is(err, storage.ErrCodeTaken) {
			return err
		}
	}
	return nil
}

type query struct {
	name string
	call func(ctx context.Context, r *reporter.Service) error
	// firstCalls: the query reads what a store keeps of a range once read
	// (a report; not a floor, nor a page of raw events).
	firstCalls bool
}

// floors are, for each k, a "report" of k point reads at once of one small
// row (the keyspace's layout row for packed hours, kept in every keyspace
// Migrate made): what Cassandra and the driver cost a report reading k
// partitions before a byte of them is decoded. With 8 clients on a small
// machine it is most of a report's p99; the reports' rows are read
// against it.
func floors(s *gocql.Session, ks ...int) []query {
	var out []query
	for _, k := range ks {
		name := fmt.Sprintf("floor: %d point reads at once", k)
		if k == 1 {
			name = "floor: 1 point read"
		}
		out = append(out, query{name: name, call: func(ctx context.Context, _ *reporter.Service) error {
			errs := make(chan error, k)
			for range k {
				go func() {
					var since time.Time
					errs <- s.Query("SELECT since FROM layout WHERE name = ?", "packs-hour").WithContext(ctx).Scan(&since)
				}()
			}
			var first error
			for range k {
				if err := <-errs; err != nil && first == nil {
					first = fmt.Errorf("floor: %w", err)
				}
			}
			return first
		}})
	}
	return out
}

type result struct {
	Query      string  `json:"query"`
	Cache      string  `json:"cache"`
	Clients    int     `json:"clients"`
	Samples    int     `json:"samples"`
	P50ms      float64 `json:"p50Ms"`
	P99ms      float64 `json:"p99Ms"`
	Throughput float64 `json:"perSecond"`
	// CPU per report of the benchmark's process (the reporter) and of the
	// -cpu-of process (the Cassandra JVM), in ms: with every client busy,
	// a report waits about clients × their sum / cores.
	CPUms      float64 `json:"cpuMs"`
	OtherCPUms float64 `json:"otherCpuMs,omitempty"`
}

// reportQueries are the reports measured, over the data set p.
func reportQueries(o options, p progress) []query {
	from, to := p.Start, p.Start.AddDate(0, 0, o.days)
	sub := subID(3)
	return []query{
		{"partner 30 d by day", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.PartnerReportJSON(ctx, report.PartnerQuery{PartnerID: partnerID, From: from, To: to, Granularity: "day"})
			return err
		}, true},
		{"partner 30 d by day, Asia/Kolkata", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.PartnerReportJSON(ctx, report.PartnerQuery{PartnerID: partnerID, From: from, To: to, Granularity: "day", TZ: "Asia/Kolkata"})
			return err
		}, true},
		{"sub-system 30 d by hour", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.SubSystemReportJSON(ctx, report.SubSystemQuery{SubSystemID: sub, From: from, To: to, Granularity: "hour"})
			return err
		}, true},
		{"sub-system 30 d by hour, Asia/Kolkata", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.SubSystemReportJSON(ctx, report.SubSystemQuery{SubSystemID: sub, From: from, To: to, Granularity: "hour", TZ: "Asia/Kolkata"})
			return err
		}, true},
		{"partner 30 d by day, one event type", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.PartnerReportJSON(ctx, report.PartnerQuery{PartnerID: partnerID, From: from, To: to, Granularity: "day", EventType: "type-07"})
			return err
		}, true},
		{"raw events, a page of 100", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.EventsPageJSON(ctx, report.EventsQuery{PartnerID: partnerID, From: from, To: to, Limit: 100})
			return err
		}, false},
		{"raw events, 100 of one type", func(ctx context.Context, r *reporter.Service) error {
			_, err := r.EventsPageJSON(ctx, report.EventsQuery{PartnerID: partnerID, From: from, To: to, Limit: 100, EventType: "type-30"})
			return err
		}, false},
	}
}

func measure(ctx context.Context, o options, store storage.Store, p progress) error {
	queries := reportQueries(o, p)
	if cs, ok := store.(*cassandrastore.Store); ok {
		// The floor: what reading k partitions at once costs with nothing
		// in them to decode, measured beside the reports in the same run.
		// Compare a report with the floor of as many partitions as its
		// statements name (-statements; an IN names each of its
		// partitions, and costs about as much as that many statements).
		queries = append(floors(cs.Session(), 1, 6, 9, 12), queries...)
	}
	log := zerolog.Nop()
	if o.gcPercent < 0 {
		o.gcPercent = 100
		if o.backend == "cassandra" {
			o.gcPercent = reporter.GCPercent
		}
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(o.gcPercent)
	}
	if o.maxConcurrent < 0 {
		o.maxConcurrent = 0
		if o.backend == "pebble" {
			o.maxConcurrent = runtime.GOMAXPROCS(0)
		}
	}
	js, stopBus, err := bus(ctx)
	if err != nil {
		return err
	}
	defer stopBus()
	uncached := reporter.New(store, log).WithProgress(js, reporter.DefaultCompleteSlack).WithMaxConcurrent(o.maxConcurrent)
	if err := checkDataSet(ctx, uncached, p); err != nil {
		return err
	}
	var cache reporter.Cache = rcache.NewLocal(256 << 20)
	cacheName := "in-process"
	if o.redis != "" {
		c, err := rcache.Open(ctx, o.redis, "reportbench:")
		if err != nil {
			return err
		}
		defer c.Close()
		cache, cacheName = c, "redis"
	}
	// As deployed: the cache's TTL, and with Redis the near cache, of the
	// reporter's defaults (the data set's range is closed: 10 minutes).
	cached := reporter.New(store, log).WithProgress(js, reporter.DefaultCompleteSlack).WithCache(cache, reporter.DefaultConfig().CacheTTL).WithNearCache(reporter.DefaultConfig().NearCacheBytes).WithNearCheckEvery(o.nearEvery).WithMaxConcurrent(o.maxConcurrent)
	if o.warmRounds < 0 {
		o.warmRounds = 0
		if o.backend == "cassandra" && !o.cachedOnly {
			o.warmRounds = 8
		}
	}
	if err := warmRounds(ctx, o, queries, uncached); err != nil {
		return err
	}
	var results []result
	cachedHow := cacheName
	if o.redis != "" {
		cachedHow += fmt.Sprintf(" with near copies, each sent for %v once found current", o.nearEvery)
	}
	fmt.Printf("\n%s, %d events over %d days from %s; %d runs per client; cached: %s\n",
		o.backend, p.Events, p.Days, p.Start.Format(time.DateOnly), o.runs, cachedHow)
	fmt.Printf("%-40s %-11s %7s %8s %8s %8s %8s", "query", "cache", "clients", "p50 ms", "p99 ms", "per s", "cpu ms")
	if o.cpuOf != 0 {
		fmt.Printf(" %8s", "other ms")
	}
	fmt.Println()
	for _, q := range queries {
		if o.only != "" && !strings.Contains(q.name, o.only) {
			continue
		}
		for _, c := range []struct {
			name string
			r    *reporter.Service
		}{{"none", uncached}, {cacheName, cached}} {
			if strings.HasPrefix(q.name, "floor") && c.name != "none" {
				continue // floors are not cached
			}
			if o.cachedOnly && c.name == "none" {
				continue
			}
			warm := 1 // fills the cache of the cached runs
			if c.name == "none" {
				warm = max(warm, o.warmup)
			}
			for range warm {
				if err := q.call(ctx, c.r); err != nil {
					return fmt.Errorf("%s: %w", q.name, err)
				}
			}
			for _, clients := range []int{1, o.clients} {
				if clients > 1 {
					// A round at this concurrency, uncounted: the cache's
					// pool dials a connection for each client, once, as a
					// reporter in service has long done.
					if _, err := timeRuns(ctx, q, c.r, clients, 1); err != nil {
						return fmt.Errorf("%s: %w", q.name, err)
					}
				}
				var stop func()
				if o.profile != "" && c.name == "none" && clients == 1 {
					if stop, err = startProfile(o.profile, q.name); err != nil {
						return err
					}
				}
				watch := o.observer != nil && c.name == "none" && clients == 1
				if watch {
					o.observer.start()
				}
				meter := &cpuMeter{pid: o.cpuOf}
				if err := meter.start(); err != nil {
					return err
				}
				res, err := timeRuns(ctx, q, c.r, clients, o.runs)
				if err == nil {
					res.CPUms, res.OtherCPUms, err = meter.per(res.Samples)
				}
				if stop != nil {
					stop()
				}
				if watch {
					o.observer.stop(o.runs)
				}
				if err != nil {
					return err
				}
				res.Cache = c.name
				results = append(results, res)
				printResult(o, res)
				if first := firstCalls(store); first != nil && o.firstCalls && c.name == "none" && clients == 1 && q.firstCalls {
					// No CPU figures: the JVM's would hold the forgetting's.
					res, err := timeFirstCalls(ctx, q, c.r, o.runs, first)
					if err != nil {
						return err
					}
					results = append(results, res)
					printResult(o, res)
				}
			}
		}
	}
	return saveResults(o, p, results)
}

func printResult(o options, res result) {
	fmt.Printf("%-40s %-11s %7d %8.2f %8.2f %8.0f", res.Query, res.Cache, res.Clients, res.P50ms, res.P99ms, res.Throughput)
	switch {
	case res.Cache == "first call":
		fmt.Printf(" %8s", "-")
		if o.cpuOf != 0 {
			fmt.Printf(" %8s", "-")
		}
	default:
		fmt.Printf(" %8.2f", res.CPUms)
		if o.cpuOf != 0 {
			fmt.Printf(" %8.2f", res.OtherCPUms)
		}
	}
	fmt.Println()
}

// firstCalls is, on Cassandra, what makes the next report the first of
// its range: the store keeps a range's users and counts, once read, in
// table unions (cassandrastore/unions.go), so every later call of the same
// range reads them rather than the range's days; a dashboard asks the same
// range again and again, a new range is asked once. nil on Pebble, which
// keeps nothing of a read.
func firstCalls(store storage.Store) func(context.Context) error {
	cs, ok := store.(*cassandrastore.Store)
	if !ok {
		return nil
	}
	return func(ctx context.Context) error {
		return cs.Session().Query("TRUNCATE unions").WithContext(ctx).Exec()
	}
}

// timeFirstCalls times runs of q, each the first of its range: forget runs
// before each, untimed.
func timeFirstCalls(ctx context.Context, q query, r *reporter.Service, runs int, forget func(context.Context) error) (result, error) {
	lat := make([]time.Duration, 0, runs)
	var busy time.Duration
	for range runs {
		if err := forget(ctx); err != nil {
			return result{}, fmt.Errorf("%s: forget the kept ranges: %w", q.name, err)
		}
		t := time.Now()
		if err := q.call(ctx, r); err != nil {
			return result{}, fmt.Errorf("%s: %w", q.name, err)
		}
		d := time.Since(t)
		busy += d
		lat = append(lat, d)
	}
	res := summarize(q.name, 1, lat, busy)
	res.Cache = "first call"
	return res, nil
}

// checkDataSet refuses to measure a data set that does not answer as it
// was loaded (a keyspace dropped or emptied under its progress file would
// give fast, empty reports): the partner's 30-day report counts every
// distinct event but the few the last minute's jitter puts past its end,
// its 50 types, and its users within the sketch's error.
func checkDataSet(ctx context.Context, r *reporter.Service, p progress) error {
	rep, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: partnerID, From: p.Start, To: p.Start.AddDate(0, 0, p.Days), Granularity: "day"})
	if err != nil {
		return fmt.Errorf("check the data set: %w", err)
	}
	distinct := int64(p.Events - (p.Events-1)/200) // one event in 200 (dupEach) repeats an earlier one
	users := int64(0)
	if rep.UniqueUsers != nil {
		users = *rep.UniqueUsers
	}
	if rep.TotalEvents > distinct || rep.TotalEvents < distinct-distinct/100 || len(rep.EventsByType) != p.Types ||
		math.Abs(float64(users-int64(p.Users))) > 0.05*float64(p.Users) {
		return fmt.Errorf("the data set does not answer as loaded: %d events (want %d, less at most 1%%), %d types (want %d), %d users (want %d ± 5%%); remove its progress file in -dir to load it again",
			rep.TotalEvents, distinct, len(rep.EventsByType), p.Types, users, p.Users)
	}
	fmt.Printf("the data set answers as loaded: %d of %d distinct events in its 30 days, %d types, %d users\n", rep.TotalEvents, distinct, len(rep.EventsByType), users)
	return nil
}

func startProfile(dir, name string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, strings.NewReplacer(" ", "-", ",", "", "/", "-").Replace(name)+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// warmRounds runs every query o.warmRounds times over, uncounted, as a node
// that has long been serving them: on a just-started Cassandra the JVM's
// CPU a report fell by about half over the first four such rounds
// (docs/PERFORMANCE.md, session 31), more than a query's own warm-up
// (-warmup) gives it.
func warmRounds(ctx context.Context, o options, queries []query, r *reporter.Service) error {
	for round := range o.warmRounds {
		began := time.Now()
		for _, q := range queries {
			if o.only != "" && !strings.Contains(q.name, o.only) {
				continue
			}
			if _, err := timeRuns(ctx, q, r, o.clients, o.runs); err != nil {
				return fmt.Errorf("warming %s: %w", q.name, err)
			}
		}
		fmt.Printf("warm-up round %d of %d: %.0f s\n", round+1, o.warmRounds, time.Since(began).Seconds())
	}
	return nil
}

func timeRuns(ctx context.Context, q query, r *reporter.Service, clients, runs int) (result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var first error
	var wg sync.WaitGroup
	began := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range runs {
				t := time.Now()
				err := q.call(ctx, r)
				d := time.Since(t)
				mu.Lock()
				lat = append(lat, d)
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(began)
	if first != nil {
		return result{}, fmt.Errorf("%s: %w", q.name, first)
	}
	return summarize(q.name, clients, lat, wall), nil
}

// summarize is the percentiles of lat (nearest rank) and the rate over wall.
func summarize(name string, clients int, lat []time.Duration, wall time.Duration) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)].Microseconds()) / 1000
	}
	return result{Query: name, Clients: clients, Samples: len(lat), P50ms: pct(0.5), P99ms: pct(0.99),
		Throughput: float64(len(lat)) / wall.Seconds()}
}

func saveResults(o options, p progress, results []result) error {
	all := map[string]any{}
	if b, err := os.ReadFile(o.out); err == nil {
		_ = json.Unmarshal(b, &all)
	}
	host, _ := os.Hostname()
	all[o.backend] = map[string]any{"measuredAt": time.Now().UTC(), "host": host, "dataSet": p, "results": results}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(all, "", "  ")
	return os.WriteFile(o.out, b, 0o644)
}
