package edge

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/shared/apierr"
)

var (
	mRequests = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_http_requests_total",
		Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"})
	mRequestSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{Name: "trk_http_request_duration_seconds",
		Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"})
)

// envelope is the one shape of every answer, errors included.
type envelope struct {
	Success   bool          `json:"success"`
	Data      any           `json:"data"`
	Message   string        `json:"message,omitempty"`
	Error     *apierr.Error `json:"error,omitempty"`
	RequestID string        `json:"requestId"`
	Timestamp time.Time     `json:"timestamp"`
}

// reply is what a handler returns; the wrapper writes it.
type reply struct {
	status int
	data   any
	msg    string
}

func ok(data any, msg string) reply       { return reply{http.StatusOK, data, msg} }
func accepted(data any, msg string) reply { return reply{http.StatusAccepted, data, msg} }

type handler func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error)

// reqState carries what the request log line needs.
type reqState struct {
	partnerID string
	events    int
}

var propagator = propagation.TraceContext{}

// handle registers h with the logging, metrics and tracing every route gets.
func (s *Server) handle(method, route string, h handler) {
	s.routeList = append(s.routeList, method+" "+publicPath(route))
	s.router.Handle(method, route, func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		s.serve(w, r, method, route, func(rs *reqState) (reply, error) { return h(w, r, p, rs) })
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, method, route string, h func(*reqState) (reply, error)) {
	start := time.Now()
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := s.tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	r = r.WithContext(ctx)
	reqID := span.SpanContext().TraceID().String()
	w.Header().Set("X-Request-Id", reqID)

	rs := &reqState{}
	rep, err := h(rs)
	status := rep.status
	var ae *apierr.Error
	if err != nil {
		ae = apierr.From(err)
		status = ae.Code.Status()
		if ae.Code == apierr.Timeout || ae.Code == apierr.Unavailable || ae.Code == apierr.Backpressure {
			w.Header().Set("Retry-After", "1")
		}
	}
	s.write(w, status, envelope{Success: err == nil, Data: rep.data, Message: rep.msg, Error: ae, RequestID: reqID})

	lat := time.Since(start)
	mRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	mRequestSeconds.WithLabelValues(route).Observe(lat.Seconds())
	ev := s.log.Info()
	if status >= 500 {
		ev = s.log.Error().Err(err)
	}
	ev = ev.Str("method", method).Str("route", route).Int("status", status).Float64("latency_ms", float64(lat.Microseconds())/1000).
		Str("request_id", reqID).Str("remote", r.RemoteAddr)
	if rs.partnerID != "" {
		ev = ev.Str("partner_id", rs.partnerID)
	}
	if rs.events > 0 {
		ev = ev.Int("events", rs.events)
	}
	if ae != nil {
		ev = ev.Str("code", string(ae.Code))
	}
	ev.Msg("request")
}

// corsHeaders lets any origin send events: a key, not a cookie, authenticates.
func corsHeaders(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset")
}

func cors(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		corsHeaders(w.Header())
		return h(w, r, p, rs)
	}
}

func preflight(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	h := w.Header()
	corsHeaders(h)
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type, X-Api-Key, X-Timestamp, X-Nonce, X-Signature")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) write(w http.ResponseWriter, status int, env envelope) {
	env.Timestamp = s.now().UTC()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(env)
}

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, apierr.New(apierr.BodyTooLarge, "the body is %d bytes; the limit is %d bytes", r.ContentLength, limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, apierr.New(apierr.BodyTooLarge, "the body is larger than the limit of %d bytes", limit)
	}
	if err != nil {
		return nil, apierr.New(apierr.InvalidJSON, "could not read the body: %v", err)
	}
	return b, nil
}

func (s *Server) routes() {
	rt := httprouter.New()
	rt.RedirectTrailingSlash = false
	rt.RedirectFixedPath = false
	rt.HandleMethodNotAllowed = true
	rt.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, r.Method, "unmatched", func(*reqState) (reply, error) {
			return reply{}, apierr.New(apierr.RouteNotFound, "no route %s %s", r.Method, r.URL.Path)
		})
	})
	rt.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, r.Method, "unmatched", func(*reqState) (reply, error) {
			return reply{}, apierr.New(apierr.MethodNotAllowed, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, w.Header().Get("Allow"))
		})
	})
	rt.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.log.Error().Interface("panic", v).Str("path", r.URL.Path).Msg("handler panicked")
		s.write(w, http.StatusInternalServerError, envelope{Error: &apierr.Error{Code: apierr.Internal, Message: "internal error"}})
	}
	s.router = rt

	rt.Handler(http.MethodGet, "/metrics", promhttp.Handler())
	rt.GET("/openapi/v1.json", s.serveOpenAPI)
	s.handle(http.MethodGet, "/api/v1/health", s.health)
	s.handle(http.MethodGet, "/api/v1/health/ready", s.ready)

	// Tracking routes are called from browsers, so they answer CORS
	// preflights; admin and report routes do not (no browser needs them
	// cross-origin, and the reference's "*" everywhere was a mistake).
	for path, h := range map[string]handler{
		"/api/v1/tracking": s.track, "/api/v1/tracking/bulk": s.trackBulk,
		"/api/v1/tracking/events": s.trackBulk, // the path the reference's SDK posts to
	} {
		s.handle(http.MethodPost, path, cors(h))
		rt.OPTIONS(path, preflight)
	}

	s.adminRoutes()
	s.deadLetterRoutes()
	s.reportRoutes()
}
