// Command drainbench loads running edges with bulk events for a while, then
// waits for the workers to drain the stream, sampling every second how many
// events were accepted, how many wait in EVENTS (the backlog) and how many
// left it (stored, or dead-lettered). It prints the backlog curve, the stored
// rate per minute and the drain time, and checks that the partner's report
// counts every accepted event exactly once. It targets loopback only and its
// load is bounded in time and concurrency.
//
//	drainbench -urls http://127.0.0.1:8081/api/v1,http://127.0.0.1:8082/api/v1 \
//	  -admin-token $(cat data/stack/admin-token) -nats-url nats://127.0.0.1:4222 \
//	  -nats-creds data/stack/nats/admin.creds -duration 60s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/subject"

	"github.com/volcanion/tracking/deploy/allinone/internal/loopback"
)

type config struct {
	urls         []string
	admin        string
	natsURL      string
	creds        string
	duration     time.Duration
	concurrency  int
	bulk         int
	drainTimeout time.Duration
	label        string
	ceiling      float64
	out          string
	hold         bool
}

func main() {
	var c config
	urls := flag.String("urls", "http://127.0.0.1:8080/api/v1", "comma-separated edge API base URLs (loopback only); clients spread over them")
	flag.StringVar(&c.admin, "admin-token", "", "admin token (creates the partner, reads its report)")
	flag.StringVar(&c.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS URL, to read the EVENTS stream (loopback only)")
	flag.StringVar(&c.creds, "nats-creds", "", "NATS credentials file (the cluster's admin.creds)")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "how long to load (at most 5m)")
	flag.IntVar(&c.concurrency, "concurrency", 8, "concurrent clients (1-256)")
	flag.IntVar(&c.bulk, "bulk", 100, "events per request (1-500)")
	flag.DurationVar(&c.drainTimeout, "drain-timeout", 15*time.Minute, "longest wait for the backlog to drain")
	flag.StringVar(&c.label, "label", "", "name of this run in the report")
	flag.Float64Var(&c.ceiling, "ceiling", 0, "the storage's own ceiling in events/s measured in the same run (prints stored/ceiling)")
	flag.StringVar(&c.out, "json", "", "also write the result as JSON to this file")
	flag.BoolVar(&c.hold, "hold", false, "pause the workers' consumer during the load, so the drain measures storing alone (needs credentials that may pause it)")
	flag.Parse()
	c.urls = strings.Split(*urls, ",")
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "drainbench:", err)
		os.Exit(1)
	}
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func call(method, url, auth string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, rd)
	if strings.HasPrefix(auth, "vtk_") {
		req.Header.Set("X-Api-Key", auth)
	} else {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		var env struct{ Data json.RawMessage }
		if err := json.Unmarshal(raw, &env); err == nil && len(env.Data) > 0 {
			_ = json.Unmarshal(env.Data, out)
		}
	}
	return resp.StatusCode, nil
}

type sample struct {
	At       float64 `json:"t"`        // seconds since the load began
	Accepted uint64  `json:"accepted"` // events answered 202 so far
	Backlog  uint64  `json:"backlog"`  // events in EVENTS
	Left     uint64  `json:"left"`     // events that left EVENTS (stored or dead-lettered)
}

type result struct {
	Label         string   `json:"label"`
	Accepted      uint64   `json:"accepted"`
	AcceptedRate  float64  `json:"acceptedPerSec"`
	StoredRate    float64  `json:"storedPerSec"` // during the load and the drain
	FirstMinute   float64  `json:"firstMinutePerSec"`
	LastMinute    float64  `json:"lastMinutePerSec"`
	PeakBacklog   uint64   `json:"peakBacklog"`
	DrainSeconds  float64  `json:"drainSeconds"` // from the end of the load to an empty stream
	StreamBytes   uint64   `json:"streamBytesAfter"`
	StreamMsgs    uint64   `json:"streamMsgsAfter"`
	Counted       int64    `json:"counted"`
	Statuses      any      `json:"statuses"`
	Ceiling       float64  `json:"ceilingPerSec,omitempty"`
	Samples       []sample `json:"samples"`
	DeadLettered  uint64   `json:"deadLettered"`
	ReportChecked bool     `json:"reportChecked"`
	Held          bool     `json:"held"`
}

func run(c config) error {
	switch {
	case c.duration <= 0 || c.duration > 5*time.Minute:
		return errors.New("-duration must be at most 5m")
	case c.concurrency < 1 || c.concurrency > 256:
		return errors.New("-concurrency must be 1-256")
	case c.bulk < 1 || c.bulk > 500:
		return errors.New("-bulk must be 1-500")
	case c.admin == "":
		return errors.New("-admin-token is required")
	}
	for _, u := range append(append([]string{}, c.urls...), c.natsURL) {
		if err := loopback.Check(u); err != nil {
			return err
		}
	}
	opts := []nats.Option{nats.Name("drainbench")}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	nc, err := nats.Connect(c.natsURL, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	state := func(name string) (jetstream.StreamState, error) {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return jetstream.StreamState{}, err
		}
		return s.CachedInfo().State, nil
	}

	// A partner of our own, with a limit far above the load.
	base := c.urls[0]
	var p, s, k struct{ ID, APIKey string }
	if st, err := call("POST", base+"/partners", c.admin, map[string]any{"code": fmt.Sprintf("drain-%d", time.Now().UnixNano()), "name": "drain bench", "rateLimit": 1_000_000}, &p); err != nil || st != 201 {
		return fmt.Errorf("create partner: %d %v", st, err)
	}
	if st, err := call("POST", base+"/partners/"+p.ID+"/sub-systems", c.admin, map[string]string{"code": "web", "name": "web"}, &s); err != nil || st != 201 {
		return fmt.Errorf("create sub-system: %d %v", st, err)
	}
	if st, err := call("POST", base+"/partners/"+p.ID+"/api-keys", c.admin, map[string]string{"name": "drain"}, &k); err != nil || st != 201 {
		return fmt.Errorf("create key: %d %v", st, err)
	}
	// Wait for every edge to know the key (a fresh key is looked up on first use).
	start0, err := state(subject.EventsStream)
	if err != nil {
		return err
	}
	dlq0, _ := state(subject.DeadLetterStream)

	evs := make([]map[string]any, c.bulk)
	types := []string{"page_view", "click", "signup", "purchase", "search", "scroll", "share", "logout"}
	for i := range evs {
		evs[i] = map[string]any{"subSystemCode": "web", "eventType": types[i%len(types)], "userId": fmt.Sprint("u-", i%97),
			"metadata": map[string]any{"path": "/pricing", "i": i}}
	}
	body := map[string]any{"events": evs}

	if c.hold {
		if _, err := js.PauseConsumer(ctx, subject.EventsStream, subject.WorkersConsumer, time.Now().Add(c.duration+time.Minute)); err != nil {
			return fmt.Errorf("pause the workers: %w", err)
		}
		defer js.ResumeConsumer(context.Background(), subject.EventsStream, subject.WorkersConsumer)
	}
	var accepted atomic.Uint64
	var mu sync.Mutex
	statuses := map[int]int{}
	began := time.Now()
	stopLoad := began.Add(c.duration)
	var wg sync.WaitGroup
	for i := 0; i < c.concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := c.urls[i%len(c.urls)] + "/tracking/bulk"
			local := map[int]int{}
			for time.Now().Before(stopLoad) {
				var out struct{ Accepted int }
				st, err := call("POST", u, k.APIKey, body, &out)
				if err != nil {
					st = -1
				}
				local[st]++
				accepted.Add(uint64(out.Accepted))
				if st == 503 || st == -1 {
					time.Sleep(100 * time.Millisecond) // backpressure: as a client honouring Retry-After would, briefly
				}
			}
			mu.Lock()
			for k, v := range local {
				statuses[k] += v
			}
			mu.Unlock()
		}()
	}

	var samples []sample
	r := result{Label: c.label, Ceiling: c.ceiling, Held: c.hold}
	take := func() (sample, error) {
		st, err := state(subject.EventsStream)
		if err != nil {
			return sample{}, err
		}
		published := st.LastSeq - start0.LastSeq
		backlog := st.Msgs - min(st.Msgs, start0.Msgs)
		sm := sample{At: time.Since(began).Seconds(), Accepted: accepted.Load(), Backlog: backlog, Left: published - min(published, backlog)}
		samples = append(samples, sm)
		r.PeakBacklog = max(r.PeakBacklog, backlog)
		return sm, nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(stopLoad) {
		<-tick.C
		if _, err := take(); err != nil {
			return err
		}
	}
	wg.Wait()
	loadSeconds := time.Since(began).Seconds()
	r.Accepted = accepted.Load()
	r.AcceptedRate = float64(r.Accepted) / loadSeconds
	if c.hold {
		if _, err := js.ResumeConsumer(ctx, subject.EventsStream, subject.WorkersConsumer); err != nil {
			return fmt.Errorf("resume the workers: %w", err)
		}
	}
	drainDeadline := time.Now().Add(c.drainTimeout)
	var last sample
	for {
		<-tick.C
		if last, err = take(); err != nil {
			return err
		}
		if last.Backlog == 0 && last.Left >= r.Accepted {
			break
		}
		if time.Now().After(drainDeadline) {
			return fmt.Errorf("the backlog did not drain in %s: %d events left", c.drainTimeout, last.Backlog)
		}
	}
	r.DrainSeconds = last.At - loadSeconds
	r.StoredRate = float64(last.Left) / last.At
	if c.hold { // nothing was stored during the load: the rate is the drain's
		r.StoredRate = float64(last.Left) / max(r.DrainSeconds, 1)
	}
	// Stored per minute: the first and the last whole minute of storing.
	rate := func(from, to float64) float64 {
		var a, b *sample
		for i := range samples {
			if a == nil && samples[i].At >= from {
				a = &samples[i]
			}
			if samples[i].At <= to {
				b = &samples[i]
			}
		}
		if a == nil || b == nil || b.At <= a.At {
			return 0
		}
		return float64(b.Left-a.Left) / (b.At - a.At)
	}
	from0 := 0.0
	if c.hold {
		from0 = loadSeconds
	}
	r.FirstMinute = rate(from0, from0+60)
	r.LastMinute = rate(max(from0, last.At-60), last.At)
	after, _ := state(subject.EventsStream)
	r.StreamBytes, r.StreamMsgs = after.Bytes, after.Msgs
	if dlq, err := state(subject.DeadLetterStream); err == nil {
		r.DeadLettered = dlq.Msgs - min(dlq.Msgs, dlq0.Msgs)
	}
	r.Statuses, r.Samples = statuses, samples

	// Every accepted event stored and counted once: the partner's report.
	from := began.Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	deadline := time.Now().Add(time.Minute)
	for {
		var rep struct{ TotalEvents int64 }
		if st, err := call("GET", base+"/reports/partners/"+p.ID+"?from="+from+"&to="+to, c.admin, nil, &rep); err == nil && st == 200 {
			r.Counted = rep.TotalEvents
		}
		if r.Counted == int64(r.Accepted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.ReportChecked = r.Counted == int64(r.Accepted)
	print(r)
	if c.out != "" {
		data, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(c.out, data, 0o644); err != nil {
			return err
		}
	}
	if !r.ReportChecked {
		return fmt.Errorf("accepted %d events but the report counts %d", r.Accepted, r.Counted)
	}
	return nil
}

func print(r result) {
	fmt.Printf("\n== %s ==\n", r.Label)
	fmt.Printf("accepted        %d events, %.0f events/s during the load (statuses %v)\n", r.Accepted, r.AcceptedRate, r.Statuses)
	span := "over load and drain"
	if r.Held {
		span = "draining a held backlog (workers paused during the load)"
	}
	fmt.Printf("stored          %.0f events/s %s; first minute %.0f/s, last minute %.0f/s (last/first %.2f)\n",
		r.StoredRate, span, r.FirstMinute, r.LastMinute, r.LastMinute/max(r.FirstMinute, 1))
	if r.Ceiling > 0 {
		fmt.Printf("vs ceiling      %.0f events/s measured in the same run: %.2f\n", r.Ceiling, r.StoredRate/r.Ceiling)
	}
	fmt.Printf("backlog         peak %d events; drained %.0f s after the load ended\n", r.PeakBacklog, r.DrainSeconds)
	fmt.Printf("stream after    %d messages, %d bytes; dead-lettered %d\n", r.StreamMsgs, r.StreamBytes, r.DeadLettered)
	fmt.Printf("report          counts %d of %d accepted (exact: %v)\n", r.Counted, r.Accepted, r.ReportChecked)
	fmt.Printf("backlog curve   ")
	for i, s := range r.Samples {
		if i%5 == 0 {
			fmt.Printf("%.0fs:%d ", s.At, s.Backlog)
		}
	}
	fmt.Println()
}
