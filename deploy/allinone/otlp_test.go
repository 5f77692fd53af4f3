package allinone_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/volcanion/tracking/shared/obs"
)

// otlpReceiver is an OTLP trace receiver in the test process, speaking
// gRPC or HTTP/protobuf, keeping every span it is sent.
type otlpReceiver struct {
	collector.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []gotSpan
	Addr  string
}

// gotSpan is a received span, with the service that sent it.
type gotSpan struct {
	Service, Name, TraceID, SpanID, ParentID string
	Links                                    []string // linked span ids
}

func (r *otlpReceiver) Export(_ context.Context, req *collector.ExportTraceServiceRequest) (*collector.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				g := gotSpan{Service: service, Name: sp.Name, TraceID: hex.EncodeToString(sp.TraceId),
					SpanID: hex.EncodeToString(sp.SpanId), ParentID: hex.EncodeToString(sp.ParentSpanId)}
				for _, l := range sp.Links {
					g.Links = append(g.Links, hex.EncodeToString(l.SpanId))
				}
				r.spans = append(r.spans, g)
			}
		}
	}
	return &collector.ExportTraceServiceResponse{}, nil
}

// startOTLP starts a receiver; protocol is "grpc" or "http/protobuf".
func startOTLP(t *testing.T, protocol string) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{Addr: ln.Addr().String()}
	if protocol == "grpc" {
		gs := grpc.NewServer()
		collector.RegisterTraceServiceServer(gs, r)
		go gs.Serve(ln)
		t.Cleanup(gs.Stop)
		return r
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var in collector.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, _ := r.Export(req.Context(), &in)
		b, _ := proto.Marshal(out)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	})
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return r
}

// trace returns the spans of one trace.
func (r *otlpReceiver) trace(id string) []gotSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []gotSpan
	for _, s := range r.spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	return out
}

// waitPath polls until the trace holds a chain of spans named by names,
// each the parent of the next, the first with no parent in the trace, each
// from the service services[i] ("" for any); it fails past the deadline.
func (r *otlpReceiver) waitPath(t *testing.T, traceID string, names, services []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans := r.trace(traceID)
		if ok, _ := chain(spans, names, services); ok {
			return
		}
		if time.Now().After(deadline) {
			_, why := chain(spans, names, services)
			t.Fatalf("trace %s: no chain %v (%s); spans: %+v", traceID, names, why, spans)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chain tells whether spans hold the parent-child chain names (by prefix).
func chain(spans []gotSpan, names, services []string) (bool, string) {
	var parent *gotSpan
	for i, name := range names {
		var next *gotSpan
		for k := range spans {
			s := &spans[k]
			if len(s.Name) < len(name) || s.Name[:len(name)] != name {
				continue
			}
			if services != nil && services[i] != "" && s.Service != services[i] {
				continue
			}
			if parent != nil && s.ParentID != parent.SpanID {
				continue
			}
			next = s
			break
		}
		if next == nil {
			return false, "no " + name
		}
		parent = next
	}
	return true, ""
}

// traceparent makes a sampled W3C trace context with a new trace id.
func traceparent(t *testing.T) (header, traceID string) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	traceID = hex.EncodeToString(b[:16])
	return "00-" + traceID + "-" + hex.EncodeToString(b[16:]) + "-01", traceID
}

// traced sends one request under a trace of its own and returns its id.
func (s *sys) traced(t *testing.T, want int, method, path, auth string, body any) string {
	t.Helper()
	tp, id := traceparent(t)
	req := s.request(method, path, auth, body)
	req.Header.Set("traceparent", tp)
	if r := s.send(req); r.Status != want {
		t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Raw)
	}
	return id
}

// TestTracesAcrossTheBus: with OTEL_EXPORTER_OTLP_* set, one ingested
// event, one report and one admin change each export one trace that runs
// edge → NATS → worker, reporter or registry → storage (the all-in-one,
// over OTLP/HTTP; TestProductionTopology does it over gRPC across
// processes).
func TestTracesAcrossTheBus(t *testing.T) {
	recv := startOTLP(t, "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+recv.Addr)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "volcanion")
	shutdown, err := obs.InitTracing(context.Background(), "volcanion")
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, t.TempDir())
	p, subs, key := s.tenant("traced", "web")

	ingest := s.traced(t, 202, "POST", "/tracking", key, ev("web", "traced"))
	s.waitTotal(subs["web"], 1)
	report := s.traced(t, 200, "GET", "/reports/sub-systems/"+subs["web"], "admin", nil)
	admin := s.traced(t, 201, "POST", "/partners/"+p+"/sub-systems", "admin", map[string]string{"code": "app", "name": "App"})
	s.stop()
	if err := shutdown(context.Background()); err != nil { // flushes the exporter
		t.Fatalf("tracing shutdown: %v", err)
	}
	recv.waitPath(t, ingest, []string{"POST /api/v1/tracking", "publish EVENTS", "store event", "storage WriteEvents"}, nil)
	recv.waitPath(t, report, []string{"GET /api/v1/reports/sub-systems", "subsystem", "storage "}, nil)
	recv.waitPath(t, admin, []string{"POST /api/v1/partners/:id/sub-systems", "subsystems.create", "storage CreateSubSystem"}, nil)
	// The worker's batch span links to the span that published the event.
	var publish string
	for _, sp := range recv.trace(ingest) {
		if sp.Name == "publish EVENTS" {
			publish = sp.SpanID
		}
	}
	recv.mu.Lock()
	linked := false
	for _, sp := range recv.spans {
		linked = linked || sp.Name == "store batch" && slices.Contains(sp.Links, publish)
	}
	recv.mu.Unlock()
	if !linked {
		t.Fatal("no batch span links to the span that published the event")
	}
}
