package edge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	mBodyBytes = promauto.NewGauge(prometheus.GaugeOpts{Name: "trk_edge_body_bytes_inflight",
		Help: "Request body bytes reserved by requests in flight (bounded by -max-inflight-body-bytes)."})
	mPanics = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_http_panics_total",
		Help: "HTTP handlers that panicked (answered 500 internal_error)."})
)

// methodLabel keeps the method label to a bounded set: the method is the
// client's to choose, and each new label value is a series kept forever.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// newRequestID makes the request id: always the server's own, so a client
// cannot choose it (nor make two requests share one) through traceparent.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
	bare   bool // data is the whole answer, without the envelope (for a client that reads another shape)
	// streamed: the handler wrote the whole answer itself (a stream).
	streamed bool
}

func ok(data any, msg string) reply { return reply{status: http.StatusOK, data: data, msg: msg} }
func accepted(data any, msg string) reply {
	return reply{status: http.StatusAccepted, data: data, msg: msg}
}

type handler func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error)

// reqState carries what the request log line needs.
type reqState struct {
	partnerID string
	events    int
	reserved  int64 // body bytes reserved from the in-flight budget, given back when the request ends
	// keyless: the body is read before any key was checked (a Segment
	// beacon carries its key in the body). Such bodies also take from a
	// small budget of their own, so anonymous senders cannot hold the
	// budget every keyed request needs.
	keyless         bool
	keylessReserved int64
}

var propagator = propagation.TraceContext{}

// handle registers h with the logging, metrics and tracing every route gets.
// A GET route answers HEAD too (RFC 9110 §9.3.2): the same handler, whose
// body net/http discards for a HEAD request. Not a stream's (the live
// tail): headers there promise nothing a HEAD could check.
func (s *Server) handle(method, route string, h handler) {
	s.routeList = append(s.routeList, method+" "+publicPath(route))
	s.router.Handle(method, route, s.route(method, route, h))
	if method == http.MethodGet && !strings.HasSuffix(route, "/tail") {
		s.router.Handle(http.MethodHead, route, s.route(http.MethodHead, route, h))
	}
}

func (s *Server) route(method, route string, h handler) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		// The handler gets the request serve made, whose context holds the
		// request's span: what it calls over NATS joins the same trace.
		s.serve(w, r, method, route, func(r *http.Request, rs *reqState) (reply, error) {
			if err := checkQuery(r.URL.RawQuery); err != nil {
				return reply{}, err
			}
			return h(w, r, p, rs)
		})
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, method, route string, h func(*http.Request, *reqState) (reply, error)) {
	start := time.Now()
	method = methodLabel(method)
	// An incoming traceparent stays the parent span; it does not choose the request id.
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	if sc := trace.SpanContextFromContext(ctx); sc.TraceState().Len() > 0 {
		// The client's tracestate would ride on every event it sends
		// (16 KB a message, rate limits count events, not bytes): keep the
		// trace, drop the vendor state.
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
	}
	ctx, span := s.tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	r = r.WithContext(ctx)
	reqID := newRequestID()
	w.Header().Set("X-Request-Id", reqID)

	rs := &reqState{}
	defer s.bodies.give(rs)
	defer s.keylessBodies.giveKeyless(rs)
	rep, err := s.call(func(rs *reqState) (reply, error) { return h(r, rs) }, rs, route, reqID)
	status := rep.status
	var ae *apierr.Error
	if err != nil {
		ae = apierr.From(err)
		status = ae.Code.Status()
		switch ae.Code {
		case apierr.Timeout, apierr.Unavailable, apierr.Backpressure, apierr.Overloaded:
			w.Header().Set("Retry-After", "1")
		}
	}
	if err == nil && rep.streamed {
		// written already
	} else if err == nil && rep.bare {
		w.Header()["Content-Type"] = hvJSON
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(rep.data)
	} else {
		s.write(w, status, envelope{Success: err == nil, Data: rep.data, Message: rep.msg, Error: ae, RequestID: reqID})
	}

	lat := time.Since(start)
	mRequests.WithLabelValues(route, method, statusLabel(status)).Inc()
	mRequestSeconds.WithLabelValues(route).Observe(lat.Seconds())
	ev := s.log.Info()
	if status >= 500 {
		ev = s.log.Error().Err(err)
	}
	ev = ev.Str("method", method).Str("route", route).Int("status", status).Float64("latency_ms", float64(lat.Microseconds())/1000).
		Str("request_id", reqID).Str("remote", r.RemoteAddr)
	if sc := span.SpanContext(); sc.HasTraceID() {
		ev = ev.Str("trace_id", sc.TraceID().String())
	}
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

// statusLabels are the status codes as strings, made once.
var statusLabels = func() (l [600]string) {
	for i := 100; i < len(l); i++ {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func statusLabel(status int) string {
	if status >= 100 && status < len(statusLabels) {
		return statusLabels[status]
	}
	return strconv.Itoa(status)
}

// call runs a handler, turning a panic into internal_error: one request's
// bug must not end the process nor leave the client without an answer. The
// panic is logged once, with its stack; the request line follows as usual.
func (s *Server) call(h func(*reqState) (reply, error), rs *reqState, route, reqID string) (rep reply, err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { // the server's own way to abort a response
				panic(v)
			}
			mPanics.Inc()
			s.log.Error().Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).
				Str("route", route).Str("request_id", reqID).Msg("handler panicked") // the route, not the path: a path may hold a key
			rep, err = reply{}, apierr.New(apierr.Internal, "internal error")
		}
	}()
	return h(rs)
}

// Constant header values, shared by every answer: assigning them costs no
// allocation (Header.Set makes a new slice each time). Nothing appends to
// them; an append to a full slice would copy anyway.
var (
	hvAnyOrigin = []string{"*"}
	hvExposed   = []string{"X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"}
	hvJSON      = []string{"application/json; charset=utf-8"}
	hvNoStore   = []string{"no-store"}
	hvNosniff   = []string{"nosniff"}
)

// corsHeaders lets any origin send events: a key, not a cookie, authenticates.
func corsHeaders(h http.Header) {
	h["Access-Control-Allow-Origin"] = hvAnyOrigin
	h["Access-Control-Expose-Headers"] = hvExposed
}

func cors(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		corsHeaders(w.Header())
		return h(w, r, p, rs)
	}
}

// preflightHeaders are the request headers a browser may send to our
// tracking routes; Segment's routes add Basic auth and X-Retry-Count.
const (
	preflightHeaders        = "Content-Type, X-Api-Key, X-Timestamp, X-Nonce, X-Signature"
	segmentPreflightHeaders = "Content-Type, Authorization, X-Api-Key, X-Retry-Count, X-Timestamp, X-Nonce, X-Signature"
)

// preflight answers CORS preflights of path, allowing headers, and lists
// the route for the API document.
func (s *Server) preflight(path, headers string) {
	s.preflights = append(s.preflights, path)
	s.router.OPTIONS(path, func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		h := w.Header()
		corsHeaders(h)
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", headers)
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) write(w http.ResponseWriter, status int, env envelope) {
	env.Timestamp = s.now().UTC()
	h := w.Header()
	h["Content-Type"], h["Cache-Control"] = hvJSON, hvNoStore
	bp := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(bp)
	if b, ok := appendEnvelope((*bp)[:0], &env); ok {
		*bp = b[:0]
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(env)
}

// bodyBudget bounds the body bytes held by all requests in flight, so a
// crowd of large bodies cannot take the process's memory: past the budget
// a request is answered 503 overloaded.
type bodyBudget struct {
	used, max atomic.Int64
	share     bool // a share of another budget: trk_edge_body_bytes_inflight counts that one
}

func (b *bodyBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max.Load() {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			if !b.share {
				mBodyBytes.Add(float64(n))
			}
			return true
		}
	}
}

func (b *bodyBudget) give(rs *reqState) {
	if rs.reserved > 0 {
		b.used.Add(-rs.reserved)
		mBodyBytes.Sub(float64(rs.reserved))
		rs.reserved = 0
	}
}

func (b *bodyBudget) giveKeyless(rs *reqState) {
	if rs.keylessReserved > 0 {
		b.used.Add(-rs.keylessReserved)
		rs.keylessReserved = 0
	}
}

// firstBodyChunk is what a body buffer starts at; it doubles as bytes
// arrive.
const firstBodyChunk = 4 << 10

// readBody reads at most limit bytes of the body. The budget is taken as
// the buffer grows with the bytes that arrived, never for a declared length
// up front: a client that declares 4 MiB and trickles a byte a second holds
// 4 KiB, so slow clients cannot fill the budget and lock everyone out.
// Reserved bytes are held until the request ends.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, rs *reqState, limit int64) ([]byte, error) {
	if rs.keyless {
		limit = min(limit, keylessBodyMax)
	}
	if r.ContentLength > limit {
		return nil, apierr.New(apierr.BodyTooLarge, "the body is %d bytes; the limit is %d bytes", r.ContentLength, limit)
	}
	return s.readFrom(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit, rs)
}

// keylessBodyMax bounds a body read before its key was checked: a
// browser's sendBeacon and keepalive fetch send at most 64 KiB.
const keylessBodyMax = 64 << 10

// readFrom reads body, of declared length (-1: unknown), up to limit bytes
// (past it, body must fail as http.MaxBytesReader does, or yield one more
// byte), taking the buffer from the budgets as it grows.
func (s *Server) readFrom(body io.Reader, declared, limit int64, rs *reqState) ([]byte, error) {
	want := limit // the most the buffer may need
	if declared >= 0 {
		want = declared // the server never reads past a declared length
	}
	overloaded := apierr.New(apierr.Overloaded, "the edge is reading as many request bodies as it may; retry shortly")
	grow := func(buf []byte) ([]byte, bool) {
		next := min(max(2*int64(cap(buf)), firstBodyChunk), want)
		n := next - int64(cap(buf))
		if rs.keyless {
			if !s.keylessBodies.take(n) {
				return buf, false
			}
			rs.keylessReserved += n
		}
		if !s.bodies.take(n) {
			return buf, false
		}
		rs.reserved += n
		nb := make([]byte, len(buf), next)
		copy(nb, buf)
		return nb, true
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= want {
				// Full: one more read tells the end from a body past the limit.
				var one [1]byte
				n, err := body.Read(one[:])
				if n == 0 && errors.Is(err, io.EOF) {
					return buf, nil
				}
				if n > 0 && err == nil {
					err = &http.MaxBytesError{Limit: limit}
				}
				return nil, bodyErr(err, limit)
			}
			var ok bool
			if buf, ok = grow(buf); !ok {
				return nil, overloaded
			}
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, bodyErr(err, limit)
		}
	}
}

func bodyErr(err error, limit int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apierr.New(apierr.BodyTooLarge, "the body is larger than the limit of %d bytes", limit)
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return apierr.New(apierr.InvalidJSON, "could not read the body: %v", err)
}

func (s *Server) routes() {
	rt := httprouter.New()
	rt.RedirectTrailingSlash = false
	rt.RedirectFixedPath = false
	rt.HandleMethodNotAllowed = true
	// OPTIONS is answered only where a browser needs a preflight (documented);
	// elsewhere it is a 405 like any method a route does not take.
	rt.HandleOPTIONS = false
	rt.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, r.Method, "unmatched", func(*http.Request, *reqState) (reply, error) {
			return reply{}, apierr.New(apierr.RouteNotFound, "no route %s %s", r.Method, r.URL.Path)
		})
	})
	rt.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(s.preflights, r.URL.Path) {
			// The router lists OPTIONS wherever a route is; it is
			// answered only on preflight routes.
			var allow []string
			for _, m := range strings.Split(w.Header().Get("Allow"), ", ") {
				if m != http.MethodOptions {
					allow = append(allow, m)
				}
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
		}
		s.serve(w, r, r.Method, "unmatched", func(*http.Request, *reqState) (reply, error) {
			return reply{}, apierr.New(apierr.MethodNotAllowed, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, w.Header().Get("Allow"))
		})
	})
	// Routes served through s.serve recover their own panics; this catches
	// the rest (metrics, the OpenAPI document, preflights).
	rt.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		mPanics.Inc()
		reqID := newRequestID()
		s.log.Error().Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).
			Str("path", r.URL.Path).Str("request_id", reqID).Msg("handler panicked")
		s.write(w, http.StatusInternalServerError, envelope{Error: &apierr.Error{Code: apierr.Internal, Message: "internal error"}, RequestID: reqID})
	}
	s.router = rt

	rt.Handler(http.MethodGet, "/metrics", promhttp.Handler())
	rt.Handler(http.MethodHead, "/metrics", promhttp.Handler())
	rt.GET("/openapi/v1.json", s.serveOpenAPI)
	rt.HEAD("/openapi/v1.json", s.serveOpenAPI)
	s.referenceRoutes(rt)
	s.consoleRoutes(rt)
	s.handle(http.MethodGet, "/api/v1/health", s.health)
	s.handle(http.MethodGet, "/api/v1/health/ready", s.ready)
	s.handle(http.MethodGet, "/api/v1/health/dependencies", s.dependencies)

	// Tracking routes are called from browsers, so they answer CORS
	// preflights; admin and report routes do not (no browser needs them
	// cross-origin, and the reference's "*" everywhere was a mistake).
	for path, h := range map[string]handler{
		"/api/v1/tracking": s.track, "/api/v1/tracking/bulk": s.trackBulk,
		"/api/v1/tracking/events": s.trackBulk, // the path the reference's SDK posts to
	} {
		s.handle(http.MethodPost, path, cors(h))
		s.preflight(path, preflightHeaders)
	}

	s.adminRoutes()
	s.deadLetterRoutes()
	s.reportRoutes()
	s.eventsRoute()
	s.tailRoutes()
	s.segmentRoutes()
}
