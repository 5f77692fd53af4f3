package edge

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/subject"
)

var mDependencyUp = promauto.NewGaugeVec(prometheus.GaugeOpts{Name: "trk_edge_dependency_up",
	Help: "1 when the dependency answered the edge's last probe (every 10 s), 0 when not: nats, eventStream, registry, reporter."},
	[]string{"dependency"})

// health is liveness: the process answers.
func (s *Server) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (reply, error) {
	return ok(map[string]string{"status": "healthy", "service": "Volcanion Tracking edge"}, ""), nil
}

// depState is the last probe of the dependencies: what the dependencies
// route reports, so no request makes the edge call anything.
type depState struct {
	mu     sync.Mutex
	checks map[string]string
	at     time.Time
}

// probe checks every dependency and sets its gauge: "ok" or why not.
func (s *Server) probe(ctx context.Context) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	check := func(name string, err error) {
		up := 0.0
		switch {
		case err == nil:
			checks[name], up = "ok", 1
		default:
			// A word, not the error: the route is public. The detail is logged.
			checks[name] = "not answering"
			s.log.Warn().Err(err).Str("dependency", name).Msg("dependency probe failed")
		}
		mDependencyUp.WithLabelValues(name).Set(up)
	}
	if s.nc.Status() != nats.CONNECTED {
		check("nats", apierr.New(apierr.Unavailable, "not connected (%s)", s.nc.Status()))
	} else {
		check("nats", nil)
	}
	_, err := s.js.Stream(ctx, subject.EventsStream)
	check("eventStream", err)
	check("registry", natsx.Call(ctx, s.nc, subject.Registry(registryapi.Health), registryapi.Request{}, nil))
	check("reporter", natsx.Call(ctx, s.nc, subject.Report(reportapi.Health), struct{}{}, nil))
	s.deps.mu.Lock()
	s.deps.checks, s.deps.at = checks, time.Now()
	s.deps.mu.Unlock()
	return checks
}

// ingestReady checks what ingest needs, NATS and the events stream, and
// nothing else: a hung registry or reporter cannot slow a load balancer's
// probe. The stream check is shared for a second, so a flood of probes
// costs NATS one request a second.
func (s *Server) ingestReady(ctx context.Context) map[string]string {
	s.ready1.mu.Lock()
	defer s.ready1.mu.Unlock()
	if time.Since(s.ready1.at) < time.Second && s.ready1.checks != nil {
		return s.ready1.checks
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	checks := map[string]string{"nats": "ok", "eventStream": "ok"}
	if st := s.nc.Status(); st != nats.CONNECTED {
		checks["nats"] = "not connected (" + st.String() + ")"
	}
	if _, err := s.js.Stream(ctx, subject.EventsStream); err != nil {
		checks["eventStream"] = "not available"
		s.log.Warn().Err(err).Msg("readiness: the events stream is not available")
	}
	s.ready1.checks, s.ready1.at = checks, time.Now()
	return checks
}

// watchDependencies keeps the dependency gauges current until ctx ends, so
// an alert sees a silent registry or reporter without anyone asking.
func (s *Server) watchDependencies(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		s.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready is readiness for a load balancer: what ingest needs (NATS and the
// events stream). A registry or reporter outage does not take ingest down;
// /health/dependencies reports them.
func (s *Server) ready(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (reply, error) {
	checks := s.ingestReady(r.Context())
	healthy := true
	for _, state := range checks {
		healthy = healthy && state == "ok"
	}
	if !healthy {
		return reply{status: http.StatusServiceUnavailable, data: map[string]any{"status": "not ready", "checks": checks}},
			apierr.New(apierr.Unavailable, "ingest is not ready: see data.checks")
	}
	return ok(map[string]any{"status": "ready", "checks": checks}, ""), nil
}

// dependencies reports every dependency's state, ingest's and the rest;
// it answers 200 whatever they are (it is a report, not a probe).
func (s *Server) dependencies(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (reply, error) {
	// The last probe's word, probed again when it is over 2 s old: however
	// many ask, the edge probes at most once every 2 s.
	s.probing.Lock()
	s.deps.mu.Lock()
	checks, at := s.deps.checks, s.deps.at
	s.deps.mu.Unlock()
	if checks == nil || time.Since(at) > 2*time.Second {
		checks, at = s.probe(r.Context()), time.Now()
	}
	s.probing.Unlock()
	// Ingest needs NATS and the events stream; the registry only for keys
	// this edge does not hold (-registry-silent-grace says what then); the
	// reporter not at all.
	ingest, reports, admin := "ready", "ready", "ready"
	if checks["nats"] != "ok" || checks["eventStream"] != "ok" {
		ingest, reports, admin = "not ready", "not ready", "not ready"
	}
	if checks["registry"] != "ok" {
		admin = "not ready"
		if ingest == "ready" && s.cache.Stale() {
			ingest = "keys this edge holds only"
			if s.cfg.RegistrySilentGrace == 0 {
				ingest = "not ready (the registry is silent past -registry-stale-after; -registry-silent-grace is 0: fail closed)"
			}
		}
	}
	if checks["reporter"] != "ok" {
		reports = "not ready"
	}
	return ok(map[string]any{"checks": checks, "ingest": ingest, "reports": reports, "admin": admin,
		"checkedAt": at.UTC()}, ""), nil
}
