// Command fastbench measures the ingest fast path against its ceilings, in
// one run on this machine, with the same bodies for every target:
//
//   - trivial: a Go handler that reads the body and answers 202 (the HTTP
//     ceiling), in its own process;
//   - single:  the edge's POST /tracking, one event per request;
//   - bulk:    the edge's POST /tracking/bulk, -bulk events per request;
//   - raw:     JetStream async publishing of the single-event body into a
//     stream configured like EVENTS, on the same server (the bus ceiling).
//
// The edge is the all-in-one binary (-bin) with its defaults: fsync before
// every PubAck, workers storing while the load runs. Targets are interleaved
// over -rounds rounds and medians reported; then a fixed-rate run at half
// the single-event peak measures latency from each request's intended send
// time (no coordinated omission). At the end it waits until every accepted
// event is stored. Everything listens on loopback and is stopped at exit.
//
//	go build -o bin/volcanion ./deploy/allinone/cmd/volcanion
//	go run ./deploy/allinone/cmd/fastbench -rounds 3 -duration 15s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/subject"
)

type config struct {
	bin               string
	rounds, conns     int
	bulk              int
	duration, warmup  time.Duration
	out               string
	profile           string
	sweep             string
	stack, stackEdges string
	stackNATS         string
	sweepDuration     time.Duration
	trivialListenMode string
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/volcanion", "the all-in-one binary to measure")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; every target runs once per round, and medians are reported (1-9)")
	flag.IntVar(&c.conns, "conns", 64, "keep-alive connections (1-256)")
	flag.IntVar(&c.bulk, "bulk", 100, "events per bulk request (1-500)")
	flag.DurationVar(&c.duration, "duration", 15*time.Second, "measured time per target and round (at most 1m)")
	flag.DurationVar(&c.warmup, "warmup", 5*time.Second, "unmeasured time before each measurement (at most 30s)")
	flag.StringVar(&c.out, "out", "", "also write the results as JSON to this file")
	flag.StringVar(&c.profile, "profile", "", "write a CPU profile of the all-in-one during each target's first measured round into this directory")
	flag.StringVar(&c.sweep, "sweep", "", "after the rounds, sweep these dimensions (comma-separated, or all: "+strings.Join(dimensions, ",")+")")
	flag.DurationVar(&c.sweepDuration, "sweep-duration", 5*time.Second, "measured time per sweep value (at most 1m)")
	flag.StringVar(&c.stack, "stack", "", "measure the production topology `make stack` runs, whose state is in this directory (data/stack), instead of the all-in-one")
	flag.StringVar(&c.stackEdges, "stack-edges", "127.0.0.1:8081,127.0.0.1:8082", "with -stack: the edges' HTTP addresses; connections are spread over them")
	flag.StringVar(&c.stackNATS, "stack-nats", "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224", "with -stack: the NATS cluster, for the raw publisher")
	flag.StringVar(&c.trivialListenMode, "trivial-listen", "", "internal: serve the trivial handler on this loopback address")
	flag.Parse()
	if c.trivialListenMode != "" {
		serveTrivial(c.trivialListenMode)
		return
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "fastbench:", err)
		os.Exit(1)
	}
}

// serveTrivial is the HTTP ceiling: read the body, answer 202 with a small
// JSON body, nothing else.
func serveTrivial(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || !ln.Addr().(*net.TCPAddr).IP.IsLoopback() {
		fmt.Fprintln(os.Stderr, "fastbench: trivial listener must be loopback:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(202)
		w.Write([]byte(`{"success":true}`))
	}))
}

// result is one target's measurement.
type result struct {
	Target    string         `json:"target"`
	Round     int            `json:"round"`
	EventsSec float64        `json:"eventsPerSecond"`
	P50, P90  time.Duration  `json:"-"`
	P99, P999 time.Duration  `json:"-"`
	Lat       map[string]int `json:"latencyMicros"`
	Statuses  map[int]int    `json:"statuses"`
	Accepted  int64          `json:"accepted"`
	// PeakRSS is the all-in-one's largest resident set sampled during
	// this measurement, in MB.
	PeakRSS float64 `json:"peakRSSMB"`
}

// sampleRSS samples pid's resident set every 100 ms until stop is closed
// and returns the largest, in MB.
func sampleRSS(pids []int, stop <-chan struct{}) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		var peak float64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if rss := maxRSS(pids); rss > peak {
				peak = rss
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// child is a process this run started and stops.
type child struct{ cmd *exec.Cmd }

func (c *child) stop() {
	if c.cmd.Process != nil {
		c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
		}
	}
}

// maxRSS is the largest resident set of pids, in MB.
func maxRSS(pids []int) float64 {
	var m float64
	for _, p := range pids {
		rss, _ := memory(p)
		m = max(m, rss)
	}
	return m
}

// maxHWM is the largest peak resident set of pids, in MB.
func maxHWM(pids []int) float64 {
	var m float64
	for _, p := range pids {
		_, hwm := memory(p)
		m = max(m, hwm)
	}
	return m
}

func urls(bases []string, path string) []string {
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = b + path
	}
	return out
}

// memory reads a process's resident set and its peak, in MB.
func memory(pid int) (rss, hwm float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				rss = kb / 1024
			} else {
				hwm = kb / 1024
			}
		}
	}
	return
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}

func do(method, url, auth string, body []byte) (int, []byte, error) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if strings.HasPrefix(auth, "vtk_") {
		req.Header.Set("X-Api-Key", auth)
	} else if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func run(c config) error {
	switch {
	case c.rounds < 1 || c.rounds > 9:
		return errors.New("-rounds must be 1-9")
	case c.conns < 1 || c.conns > 256:
		return errors.New("-conns must be 1-256")
	case c.bulk < 1 || c.bulk > 500:
		return errors.New("-bulk must be 1-500")
	case c.duration <= 0 || c.duration > time.Minute || c.warmup < 0 || c.warmup > 30*time.Second:
		return errors.New("-duration must be at most 1m and -warmup at most 30s")
	case c.sweepDuration <= 0 || c.sweepDuration > time.Minute:
		return errors.New("-sweep-duration must be at most 1m")
	case c.stack != "" && c.profile != "":
		return errors.New("-profile measures the all-in-one; it cannot be used with -stack")
	}
	var sweeps []string
	if c.sweep == "all" {
		sweeps = dimensions
	} else if c.sweep != "" {
		sweeps = strings.Split(c.sweep, ",")
	}
	if _, err := os.Stat(c.bin); err != nil && c.stack == "" {
		return fmt.Errorf("-bin %s: %w (build it: go build -o bin/volcanion ./deploy/allinone/cmd/volcanion)", c.bin, err)
	}
	// The trivial handler, in its own process.
	self, _ := os.Executable()
	tcmd := exec.Command(self, "-trivial-listen", "127.0.0.1:0")
	tout, _ := tcmd.StdoutPipe()
	if err := tcmd.Start(); err != nil {
		return err
	}
	trivial := &child{tcmd}
	defer trivial.stop()
	line, err := bufio.NewReader(tout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("trivial handler: %w", err)
	}
	trivialURL := "http://" + strings.TrimSpace(line) + "/"

	// The system under test: the all-in-one with its defaults (fsync on),
	// started here with a NATS port for the raw publisher; or, with -stack,
	// the production topology `make stack` runs.
	var (
		bases       []string // each edge's API base URL
		natsURL     string
		creds       string
		tokenFile   string
		pids        []int // processes whose RSS is reported (the edges)
		metricsAddr string
		what        = "all-in-one"
	)
	if c.stack != "" {
		what = "edge"
		for _, e := range strings.Split(c.stackEdges, ",") {
			bases = append(bases, "http://"+strings.TrimSpace(e)+"/api/v1")
		}
		natsURL, creds, tokenFile = c.stackNATS, filepath.Join(c.stack, "nats", "admin.creds"), filepath.Join(c.stack, "admin-token")
		for _, name := range []string{"edge1", "edge2"} {
			b, err := os.ReadFile(filepath.Join(c.stack, "pids", name+".pid"))
			if err != nil {
				return fmt.Errorf("-stack: %w (is `make stack` up?)", err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			pids = append(pids, pid)
		}
	} else {
		dir, err := os.MkdirTemp("", "fastbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		httpAddr, _ := freePort()
		natsAddr, _ := freePort()
		metricsAddr, _ = freePort()
		logf, _ := os.Create(filepath.Join(dir, "volcanion.log"))
		defer logf.Close()
		vcmd := exec.Command(c.bin, "-data-dir", filepath.Join(dir, "data"), "-http-listen", httpAddr, "-nats-listen", natsAddr,
			"-metrics-listen", metricsAddr, "-log-format", "json")
		vcmd.Stdout, vcmd.Stderr = io.Discard, logf
		if err := vcmd.Start(); err != nil {
			return err
		}
		edge := &child{vcmd}
		defer edge.stop()
		bases, natsURL, pids = []string{"http://" + httpAddr + "/api/v1"}, "nats://"+natsAddr, []int{vcmd.Process.Pid}
		creds, tokenFile = filepath.Join(dir, "data", "nats-auth", "admin.creds"), filepath.Join(dir, "data", "admin-token")
	}
	base := bases[0]
	deadline := time.Now().Add(60 * time.Second)
	for _, b := range bases {
		for {
			if st, _, err := do("GET", b+"/health", "", nil); err == nil && st == 200 {
				break
			}
			if time.Now().After(deadline) {
				return errors.New(b + " did not answer /health in 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	admin := strings.TrimSpace(string(tok))
	partnerID, key, err := tenant(base, admin)
	if err != nil {
		return err
	}
	idleRSS := maxRSS(pids)

	single := []byte(`{"subSystemCode":"web","eventType":"page_view","userId":"u-42","anonymousId":"a-0b7c","metadata":{"path":"/pricing","ref":"news","plan":"pro","experiment":"checkout-v2","screen":"1440x900"}}`)
	evs := make([]json.RawMessage, c.bulk)
	for i := range evs {
		evs[i] = single
	}
	bulk, _ := json.Marshal(map[string]any{"events": evs})

	// The raw publisher: a stream configured like EVENTS, on other subjects.
	opts, err := natsx.Credentials(creds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16)) // as the edge's
	ctx := context.Background()
	evStream, err := js.Stream(ctx, subject.EventsStream)
	if err != nil {
		return err
	}
	scfg := evStream.CachedInfo().Config
	scfg.Name, scfg.Subjects, scfg.Metadata = "BENCH_RAW", []string{"bench.raw.>"}, nil
	if _, err := js.CreateOrUpdateStream(ctx, scfg); err != nil {
		return fmt.Errorf("raw stream: %w", err)
	}

	raw, _ := js.Stream(ctx, "BENCH_RAW")
	settle := func() error {
		if err := raw.Purge(ctx); err != nil {
			return fmt.Errorf("purge BENCH_RAW: %w", err)
		}
		want := edgeAccepted.Load()
		got, _, err := waitStored(base, admin, []string{partnerID}, want)
		if err == nil && got < want {
			err = fmt.Errorf("%d of %d accepted events stored after 10 minutes", got, want)
		}
		return err
	}

	targets := []struct {
		name string
		fn   func(d time.Duration, round int) result
	}{
		{"trivial", func(d time.Duration, _ int) result { return closedLoop(c.conns, d, trivialURL, "", single, 1) }},
		{"single", func(d time.Duration, _ int) result {
			return closedLoopOver(c.conns, d, urls(bases, "/tracking"), []string{key}, single, 1)
		}},
		{"bulk", func(d time.Duration, _ int) result {
			return closedLoopOver(c.conns, d, urls(bases, "/tracking/bulk"), []string{key}, bulk, c.bulk)
		}},
		{"raw", func(d time.Duration, round int) result { return rawPublish(ctx, js, d, single, round) }},
	}
	all := map[string][]result{}
	for round := 1; round <= c.rounds; round++ {
		for _, t := range targets {
			if c.warmup > 0 {
				t.fn(c.warmup, -round)
			}
			stop := make(chan struct{})
			peak := sampleRSS(pids, stop)
			var profiled <-chan error
			if c.profile != "" && round == 1 && t.name != "trivial" {
				profiled = cpuProfile(metricsAddr, max(c.duration-time.Second, time.Second), filepath.Join(c.profile, t.name+".pprof"))
			}
			r := t.fn(c.duration, round)
			close(stop)
			if profiled != nil {
				if err := <-profiled; err != nil {
					return fmt.Errorf("profile of %s: %w", t.name, err)
				}
			}
			r.Target, r.Round, r.PeakRSS = t.name, round, <-peak
			all[t.name] = append(all[t.name], r)
			if c.profile != "" && round == 1 && t.name != "trivial" {
				if err := heapProfile(metricsAddr, filepath.Join(c.profile, t.name+".heap.pprof")); err != nil {
					return fmt.Errorf("heap profile of %s: %w", t.name, err)
				}
			}
			// Each measurement starts from an empty backlog: what one
			// target left for the workers must not slow the next.
			if err := settle(); err != nil {
				return err
			}
			fmt.Printf("round %d %-8s %10.0f events/s  p50 %-9s p99 %-9s statuses %v\n", round, t.name, r.EventsSec, r.P50, r.P99, r.Statuses)
		}
	}
	med := map[string]result{}
	for name, rs := range all {
		sort.Slice(rs, func(i, j int) bool { return rs[i].EventsSec < rs[j].EventsSec })
		med[name] = rs[len(rs)/2]
	}
	peakHWM := maxHWM(pids)

	// Latency at half the single-event peak, with the workers storing.
	rate := med["single"].EventsSec / 2 // measured after the last settle: the workers store this load only
	fixed := fixedRate(c.conns, c.duration, rate, urls(bases, "/tracking"), key, single)

	swept, err := sweep(sweeps, c.sweepDuration, c.conns, base, admin, key, single)
	if err != nil {
		return err
	}

	// Every accepted event stored.
	accepted := edgeAccepted.Load()
	if len(itemErrC) > 0 {
		fmt.Printf("events refused inside accepted bulks, by code: %v\n", itemErrC)
	}
	stored, drain, err := waitStored(base, admin, append([]string{partnerID}, sweepPartners...), accepted)
	if err != nil {
		return err
	}

	durability := "fsync on (the all-in-one's default)"
	if c.stack != "" {
		durability = fmt.Sprintf("the stack (%d edges, a 3-node NATS cluster with R3 streams, workers on Cassandra)", len(bases))
	}
	fmt.Printf("\nfastbench: %d rounds of %s (warm-up %s), %d connections, bulk of %d; medians; %s\n",
		c.rounds, c.duration, c.warmup, c.conns, c.bulk, durability)
	fmt.Printf("| measure | events/s | p50 | p90 | p99 | p99.9 | statuses | %s peak RSS |\n|---|---|---|---|---|---|---|---|\n", what)
	for _, name := range []string{"trivial", "single", "bulk", "raw"} {
		r := med[name]
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s | %v | %.0f MB |\n", name, r.EventsSec, r.P50, r.P90, r.P99, r.P999, r.Statuses, r.PeakRSS)
	}
	fmt.Printf("| fixed rate %.0f/s (half the single peak) | %.0f | %s | %s | %s | %s | %v |\n", rate, fixed.EventsSec, fixed.P50, fixed.P90, fixed.P99, fixed.P999, fixed.Statuses)
	fmt.Printf("\nratios: single/trivial %.3f (target 0.50); bulk/raw %.3f (target 0.60)\n",
		med["single"].EventsSec/med["trivial"].EventsSec, med["bulk"].EventsSec/med["raw"].EventsSec)
	fmt.Printf("%s RSS: idle %.0f MB, peak over the whole run %.0f MB; stored %d of %d accepted events, the last %s after the load\n",
		what, idleRSS, peakHWM, stored, accepted, drain.Round(time.Millisecond))
	printSweep(sweeps, swept, c.conns)
	if c.out != "" {
		data, _ := json.MarshalIndent(map[string]any{"sweeps": swept, "rounds": all, "medians": med, "fixedRate": fixed, "idleRSSMB": idleRSS,
			"peakRSSMB": peakHWM, "accepted": accepted, "stored": stored}, "", "  ")
		if err := os.WriteFile(c.out, data, 0o644); err != nil {
			return err
		}
	}
	if stored != accepted {
		return fmt.Errorf("%d events accepted but %d stored", accepted, stored)
	}
	return nil
}

// heapProfile writes the all-in-one's live heap to path.
func heapProfile(addr, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// cpuProfile asks the all-in-one's metrics listener for a CPU profile of
// the next d and writes it to path.
func cpuProfile(addr string, d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	go func() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			done <- err
			return
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			done <- fmt.Errorf("status %d", resp.StatusCode)
			return
		}
		f, err := os.Create(path)
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		done <- err
	}()
	return done
}

// edgeAccepted counts every event the edge accepted (warm-ups included),
// for the stored check.
var edgeAccepted atomic.Int64

var (
	errMu    sync.Mutex
	itemErrC = map[string]int{}
)

func itemErrs(code string) { errMu.Lock(); itemErrC[code]++; errMu.Unlock() }

func tenant(base, admin string) (partnerID, key string, err error) {
	create := func(path string, body any, out any) error {
		b, _ := json.Marshal(body)
		st, raw, err := do("POST", base+path, admin, b)
		if err != nil || st != 201 {
			return fmt.Errorf("setup %s: %d %v %s", path, st, err, raw)
		}
		var env struct{ Data json.RawMessage }
		json.Unmarshal(raw, &env)
		return json.Unmarshal(env.Data, out)
	}
	var p, s, k struct{ ID, APIKey string }
	if err := create("/partners", map[string]any{"code": fmt.Sprintf("fast-%d", time.Now().UnixNano()), "name": "fastbench", "rateLimit": 1_000_000}, &p); err != nil {
		return "", "", err
	}
	if err := create("/partners/"+p.ID+"/sub-systems", map[string]string{"code": "web", "name": "web"}, &s); err != nil {
		return "", "", err
	}
	if err := create("/partners/"+p.ID+"/api-keys", map[string]string{"name": "fastbench"}, &k); err != nil {
		return "", "", err
	}
	return p.ID, k.APIKey, nil
}

func summarise(lat []time.Duration, statuses map[int]int, events int64, elapsed time.Duration) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	r := result{EventsSec: float64(events) / elapsed.Seconds(), P50: pct(0.5), P90: pct(0.9), P99: pct(0.99), P999: pct(0.999),
		Statuses: statuses, Accepted: events}
	r.Lat = map[string]int{"p50": int(r.P50.Microseconds()), "p90": int(r.P90.Microseconds()), "p99": int(r.P99.Microseconds()), "p99.9": int(r.P999.Microseconds())}
	return r
}

// closedLoop keeps conns requests in flight for d.
// Statuses are by request; 1000 counts events refused inside a bulk that
// was answered 202.
func closedLoop(conns int, d time.Duration, url, key string, body []byte, perReq int) result {
	return closedLoopKeys(conns, d, url, []string{key}, body, perReq)
}

// closedLoopKeys is closedLoop with requests spread over keys in turn.
func closedLoopKeys(conns int, d time.Duration, url string, keys []string, body []byte, perReq int) result {
	return closedLoopOver(conns, d, []string{url}, keys, body, perReq)
}

// closedLoopOver is closedLoopKeys with the connections spread over urls
// (the edges of a stack).
func closedLoopOver(conns int, d time.Duration, urls []string, keys []string, body []byte, perReq int) result {
	var mu sync.Mutex
	var lat []time.Duration
	statuses := map[int]int{}
	bulkQueued := 0
	end := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	var turn atomic.Uint64
	for i := 0; i < conns; i++ {
		wg.Add(1)
		url := urls[i%len(urls)]
		go func() {
			defer wg.Done()
			var mine []time.Duration
			local := map[int]int{}
			queued := 0
			for time.Now().Before(end) {
				t0 := time.Now()
				st, raw, err := do("POST", url, keys[turn.Add(1)%uint64(len(keys))], body)
				if err != nil {
					st = -1
				}
				mine = append(mine, time.Since(t0))
				if st == 202 && perReq > 1 {
					// A bulk answers 202 when any event was queued; count
					// those the answer names as queued, and why others were not.
					var env struct {
						Data struct {
							Accepted int
							Results  []struct {
								Error *struct{ Code string }
							}
						}
					}
					json.Unmarshal(raw, &env)
					queued += env.Data.Accepted
					for _, it := range env.Data.Results {
						if it.Error != nil {
							local[1000]++ // an event refused inside an accepted bulk
							itemErrs(it.Error.Code)
						}
					}
				}
				local[st]++
			}
			mu.Lock()
			lat = append(lat, mine...)
			for k, v := range local {
				statuses[k] += v
			}
			bulkQueued += queued
			mu.Unlock()
		}()
	}
	wg.Wait()
	ok := int64(statuses[202])
	if perReq > 1 {
		ok = int64(bulkQueued)
	}
	if keys[0] != "" { // the trivial handler stores nothing
		edgeAccepted.Add(ok)
	}
	return summarise(lat, statuses, ok, time.Since(start))
}

// fixedRate sends rate requests a second over conns connections for d. Each
// request's latency counts from when it was due, so a stall delays the
// requests behind it and they count it (no coordinated omission).
func fixedRate(conns int, d time.Duration, rate float64, urls []string, key string, body []byte) result {
	interval := time.Duration(float64(time.Second) * float64(conns) / rate)
	var mu sync.Mutex
	var lat []time.Duration
	statuses := map[int]int{}
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			due := start.Add(interval * time.Duration(i) / time.Duration(conns))
			var mine []time.Duration
			local := map[int]int{}
			for due.Before(start.Add(d)) {
				if w := time.Until(due); w > 0 {
					time.Sleep(w)
				}
				st, _, err := do("POST", urls[i%len(urls)], key, body)
				if err != nil {
					st = -1
				}
				mine = append(mine, time.Since(due))
				local[st]++
				due = due.Add(interval)
			}
			mu.Lock()
			lat = append(lat, mine...)
			for k, v := range local {
				statuses[k] += v
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	edgeAccepted.Add(int64(statuses[202]))
	return summarise(lat, statuses, int64(statuses[202]), time.Since(start))
}

// rawPublish publishes body asynchronously into BENCH_RAW for d, each with
// its own Nats-Msg-Id (the dedup window on, as for events), and counts acks.
func rawPublish(ctx context.Context, js jetstream.JetStream, d time.Duration, body []byte, round int) result {
	var acked, failed atomic.Int64
	start := time.Now()
	end := start.Add(d)
	n := 0
	for time.Now().Before(end) {
		f, err := js.PublishAsync("bench.raw.p.s", body, jetstream.WithMsgID(fmt.Sprintf("r%d-%d", round, n)))
		n++
		if err != nil {
			failed.Add(1)
			continue
		}
		go func() {
			select {
			case <-f.Ok():
				acked.Add(1)
			case err := <-f.Err():
				if failed.Add(1) == 1 {
					fmt.Fprintf(os.Stderr, "raw publish round %d: first error: %v\n", round, err)
				}
			}
		}()
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
	}
	elapsed := time.Since(start)
	return summarise(nil, map[int]int{202: int(acked.Load()), 503: int(failed.Load())}, acked.Load(), elapsed)
}

// waitStored polls the partner's report until it counts want events.
func waitStored(base, admin string, partnerIDs []string, want int64) (int64, time.Duration, error) {
	start := time.Now()
	from := time.Now().UTC().Add(-2 * time.Hour).Format(time.RFC3339)
	to := time.Now().UTC().Add(2 * time.Hour).Format(time.RFC3339)
	var got int64
	n := 0
	var st int
	var raw []byte
	for time.Since(start) < 10*time.Minute {
		got = 0
		for _, id := range partnerIDs {
			var err error
			st, raw, err = do("GET", base+"/reports/partners/"+id+"?from="+from+"&to="+to, admin, nil)
			if err != nil || st != 200 {
				got = -1
				break
			}
			var env struct {
				Data struct {
					TotalEvents int64 `json:"totalEvents"`
				}
			}
			json.Unmarshal(raw, &env)
			got += env.Data.TotalEvents
		}
		if got >= want {
			return got, time.Since(start), nil
		}
		if n++; n%20 == 0 {
			fmt.Fprintf(os.Stderr, "waiting: %d of %d accepted events stored after %s (%d %s)\n", got, want, time.Since(start).Round(time.Second), st, bytes.TrimSpace(raw[:min(len(raw), 200)]))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return got, time.Since(start), nil
}
