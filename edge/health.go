package edge

import (
	"context"
	"net/http"
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

// Ingest needs NATS and the events stream; the registry only for keys this
// edge does not hold (and -registry-silent-grace says what then), the
// reporter not at all.
var ingestNeeds = map[string]bool{"nats": true, "eventStream": true}

// health is liveness: the process answers.
func (s *Server) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (reply, error) {
	return ok(map[string]string{"status": "healthy", "service": "Volcanion Tracking edge"}, ""), nil
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
		case apierr.From(err).Code == apierr.Internal:
			checks[name] = err.Error()
		default:
			checks[name] = apierr.From(err).Message
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
	all := s.probe(r.Context())
	checks := map[string]string{}
	healthy := true
	for name, state := range all {
		if ingestNeeds[name] {
			checks[name] = state
			healthy = healthy && state == "ok"
		}
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
	checks := s.probe(r.Context())
	ingest, reports, admin := "ready", "ready", "ready"
	for name, state := range checks {
		if state == "ok" {
			continue
		}
		switch name {
		case "nats", "eventStream":
			ingest, reports, admin = "not ready", "not ready", "not ready"
		case "registry":
			admin = "not ready"
			if s.cache.Stale() {
				ingest = "keys this edge holds only"
				if s.cfg.RegistrySilentGrace == 0 {
					ingest = "not ready (the registry is silent past -registry-stale-after; -registry-silent-grace is 0: fail closed)"
				}
			}
		case "reporter":
			reports = "not ready"
		}
	}
	return ok(map[string]any{"checks": checks, "ingest": ingest, "reports": reports, "admin": admin,
		"registrySilentGrace": s.cfg.RegistrySilentGrace.String()}, ""), nil
}
