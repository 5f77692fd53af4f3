package allinone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/subject"
)

// Ingest benchmarks drive the real all-in-one over loopback HTTP: key
// check, validation, JetStream publish with PubAck, workers writing to
// Pebble in the background. Run with `make bench`.

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func benchSys(b *testing.B, noFsync bool) (*sys, string) {
	// A limit far above the load, so the limiter's cost is in the figures.
	s := startWith(b, b.TempDir(), func(c *config) { c.Edge.RateLimit, c.NATS.NoSync = 1<<30, noFsync })
	_, _, key := s.tenant("bench", "web")
	return s, key
}

func post(b *testing.B, url, key string, body []byte) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("X-Api-Key", key)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		b.Errorf("status %d", resp.StatusCode)
	}
}

// Each benchmark runs with fsync before the PubAck (the default) and
// without (-no-fsync).
func BenchmarkIngestSingle(b *testing.B) {
	for _, noFsync := range []bool{false, true} {
		b.Run(fsyncName(noFsync), func(b *testing.B) { ingestSingle(b, noFsync) })
	}
}

func BenchmarkIngestBulk100(b *testing.B) {
	for _, noFsync := range []bool{false, true} {
		b.Run(fsyncName(noFsync), func(b *testing.B) { ingestBulk(b, noFsync) })
	}
}

func fsyncName(noFsync bool) string {
	if noFsync {
		return "no-fsync"
	}
	return "fsync"
}

func ingestSingle(b *testing.B, noFsync bool) {
	s, key := benchSys(b, noFsync)
	body, _ := json.Marshal(ev("web", "page_view", "metadata", map[string]any{"path": "/pricing", "ref": "news"}))
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			post(b, s.base+"/tracking", key, body)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

func ingestBulk(b *testing.B, noFsync bool) {
	s, key := benchSys(b, noFsync)
	var batch []map[string]any
	for i := 0; i < 100; i++ {
		batch = append(batch, ev("web", "page_view", "metadata", map[string]any{"path": "/pricing", "i": i}))
	}
	body, _ := json.Marshal(map[string]any{"events": batch})
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			post(b, s.base+"/tracking/bulk", key, body)
		}
	})
	b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "events/s")
}

// handlerCase is one sub-benchmark of a handler: a route, a body and the
// events in it.
type handlerCase struct {
	name, path string
	h          http.Handler
	body       []byte
	events     int
}

// ingestBodies are the single event and the bulk of 100 the handler
// benchmarks send.
func ingestBodies() (single, bulk []byte) {
	single, _ = json.Marshal(ev("web", "page_view", "metadata", map[string]any{"path": "/pricing", "ref": "news"}))
	var batch []map[string]any
	for i := 0; i < 100; i++ {
		batch = append(batch, ev("web", "page_view", "metadata", map[string]any{"path": "/pricing", "i": i}))
	}
	bulk, _ = json.Marshal(map[string]any{"events": batch})
	return single, bulk
}

// runHandlerCases serves each case's request to its handler b.N times,
// without a socket, and reports allocations and events per second.
func runHandlerCases(b *testing.B, key string, cases []handlerCase) {
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			serve := func() {
				req := httptest.NewRequest("POST", c.path, bytes.NewReader(c.body))
				req.Header.Set("X-Api-Key", key)
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != 202 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			serve() // caches warm
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serve()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*c.events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEdgeHandler measures the edge's handler alone, without a socket:
// key check from cache, rate limit, decode and validation, publish with
// PubAck, the answer. The workers' consumer is paused so allocs/op counts
// the edge and the embedded server's publish path, not storage.
func BenchmarkEdgeHandler(b *testing.B) {
	s := startWith(b, b.TempDir(), func(c *config) { c.Edge.RateLimit, c.NATS.NoSync = 1<<30, true })
	_, _, key := s.tenant("bench", "web")
	nc, err := s.app.ConnectAs("admin")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.PauseConsumer(context.Background(), subject.EventsStream, subject.WorkersConsumer, time.Now().Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	h := s.app.Handler()
	single, bulk := ingestBodies()
	runHandlerCases(b, key, []handlerCase{{"single", "/api/v1/tracking", h, single, 1}, {"bulk100", "/api/v1/tracking/bulk", h, bulk, 100}})
}

// BenchmarkEdgeAlone measures the edge's handler in a process of its own,
// as an edge runs in production: the all-in-one (bus, registry, workers)
// runs as a child process, and an edge.Server here connects to its NATS
// port with the edge's credentials. allocs/op counts the edge and its NATS
// client only. "harness" is what the benchmark's own request and recorder
// cost, to subtract from the others.
func BenchmarkEdgeAlone(b *testing.B) {
	c := startChild(b, "127.0.0.1:-1")
	s := &sys{t: b, logs: &lockedBuffer{}, base: "http://" + c.addr + "/api/v1", admin: c.token}
	_, _, key := s.tenant("alone", "web")
	opts, err := natsx.Credentials(filepath.Join(c.auths, "edge.creds"))
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(c.natsURL, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := edge.DefaultConfig()
	cfg.RateLimit = 1 << 30 // far above the load, so the limiter's cost is in the figures
	cfg.AdminTokens = []string{c.token}
	srv, err := edge.New(cfg, nc, js, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	single, bulk := ingestBodies()
	noop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) })
	runHandlerCases(b, key, []handlerCase{{"harness", "/", noop, single, 1}, {"single", "/api/v1/tracking", srv, single, 1},
		{"bulk100", "/api/v1/tracking/bulk", srv, bulk, 100}})
}
