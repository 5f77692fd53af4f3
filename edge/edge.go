// Package edge is the HTTP front door. It authenticates partner keys,
// validates events and publishes them to JetStream, answering 202 only after
// the stream acknowledged them. Admin and report routes are forwarded to the
// registry and reporter over NATS request-reply.
package edge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/edge/internal/authcache"
	"github.com/volcanion/tracking/edge/internal/groupcommit"
	"github.com/volcanion/tracking/edge/internal/ratelimit"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/signing"
)

// Config is the edge's configuration.
type Config struct {
	// AdminTokens are the credentials of admin and report routes.
	AdminTokens []string
	// TrustedProxies may set X-Forwarded-For; from anyone else it is ignored.
	TrustedProxies []netip.Prefix
	Limits         event.Limits
	MaxBodyBytes   int64 // one event
	MaxBulkBytes   int64 // one bulk request
	MaxBulkEvents  int
	// MaxInflightBodyBytes bounds the body bytes held by all requests in
	// flight together; past it a request is answered 503 overloaded.
	MaxInflightBodyBytes int64
	PublishTimeout       time.Duration
	// ReportTimeout bounds a report or events call to the reporter: past
	// it the client gets 503 timeout with Retry-After, never a hang.
	ReportTimeout time.Duration
	// GroupCommitMin is the fewest events sent together as one JetStream
	// atomic batch (one disk sync for all); 0 publishes every event on its
	// own. Worth it when the stream syncs every write; without that, a
	// batch's set-up costs more than it saves.
	GroupCommitMin int
	// CacheTTL bounds how long a cached key or partner is trusted; changes
	// broadcast by the registry drop entries at once, this is the backstop.
	CacheTTL time.Duration
	// Shared is the Redis cache the registry fills; nil: none.
	Shared *rcache.Cache
	// AdminTokensFile, if set, holds more admin tokens (one per line); it
	// is re-read when it changes, so tokens rotate without a restart.
	AdminTokensFile string
	// RateLimit is the default events per second of a key (0: none);
	// partners and keys override it through the registry.
	RateLimit int
	// Limiter applies rate limits; nil is an in-process limiter.
	Limiter ratelimit.Limiter
	// ReplayWindow bounds X-Timestamp of signed requests.
	ReplayWindow time.Duration
	// Nonces remembers the nonces of signed requests; nil is in-process.
	Nonces signing.Nonces
	// RegistryStaleAfter: with no word from the registry (changes or
	// heartbeats) for this long, cached entries are no longer trusted.
	RegistryStaleAfter time.Duration
	// RegistrySilentGrace is the policy past that bound: 0 fails closed
	// (a key this edge cannot check with the registry is refused); more
	// serves the keys and partners it already holds for that much longer,
	// unless the registry answers, at the cost of missing a revocation
	// made meanwhile.
	RegistrySilentGrace time.Duration
	// Listen is host:port of the HTTP API (the component's; edge.New
	// takes no listener).
	Listen string
	// RateLimitEdges is how many edges share the limits: while Redis is
	// down each allows limit/edges.
	RateLimitEdges int

	flagPrefix string // what RegisterFlags put before each flag name, so errors name the flag given
}

// DefaultConfig is a sensible configuration; AdminTokens must still be set.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:8080",
		RateLimitEdges: 1,
		Limits:         event.DefaultLimits(),
		MaxBodyBytes:   64 << 10,
		MaxBulkBytes:   4 << 20,
		MaxBulkEvents:  500,
		// 16 bulks of the largest size at once; a decoding bulk holds a few
		// times its body, so this bounds what bodies cost the heap.
		MaxInflightBodyBytes: 64 << 20,
		PublishTimeout:       5 * time.Second,
		ReportTimeout:        10 * time.Second,
		GroupCommitMin:       16,
		CacheTTL:             time.Minute,
		RateLimit:            1000,
		ReplayWindow:         5 * time.Minute,

		RegistryStaleAfter: 30 * time.Second,
	}
}

// ParseProxies parses a comma-separated list of IPs and CIDRs.
func ParseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Server is one edge node.
type Server struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	log    zerolog.Logger
	cache  *authcache.Cache
	router *httprouter.Router
	tracer trace.Tracer
	now    func() time.Time

	limiter      ratelimit.Limiter
	nonces       signing.Nonces
	admin        *admintoken.Set // the flag's tokens and the file's, re-read when it changes
	touched      touches
	bodies       bodyBudget
	deps, ready1 depState   // the dependency probe's last result; readiness's, shared for a second
	probing      sync.Mutex // one dependency probe at a time
	// keylessBodies is the share of bodies read before a key was checked.
	keylessBodies bodyBudget
	routeList     []string  // "METHOD /path" of every API route, for the OpenAPI document
	preflights    []string  // paths that answer CORS preflights, for the OpenAPI document
	dedupKey      []byte    // from the EVENTS stream: Nats-Msg-Ids no direct publisher can forge
	macs          sync.Pool // of HMAC-SHA256 under dedupKey: one per msgID would cost a dozen allocations

	pub     *groupcommit.Publisher // nil when offline
	stopPub context.CancelFunc
	// closing is closed when Serve begins to shut down: long answers (the
	// live tail) end then, so the shutdown does not wait for them.
	closing     chan struct{}
	closingOnce sync.Once
	tails       tailStreams
}

// maxPendingAcks bounds the edge's publishes awaiting their PubAck.
const maxPendingAcks = 1 << 16

// New makes an edge. Call Start before serving.
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("svc", "edge").Logger()
	admin, err := admintoken.New(admintoken.Config{Tokens: cfg.AdminTokens, File: cfg.AdminTokensFile})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	// The edge's own JetStream context: asynchronous publishes of bulks may
	// have many acks outstanding (the body budget bounds them), past the
	// library's default of 4,000, which stalled busy bulks into refusals.
	if nc != nil {
		if own, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPendingAcks)); err == nil {
			js = own
		}
	}
	s := &Server{cfg: cfg, nc: nc, js: js, log: log, closing: make(chan struct{}),
		cache:  authcache.New(nc, cfg.CacheTTL, log).WithShared(cfg.Shared).WithStaleBound(cfg.RegistryStaleAfter).WithSilentGrace(cfg.RegistrySilentGrace),
		tracer: otel.Tracer("edge"), now: time.Now, limiter: cfg.Limiter, nonces: cfg.Nonces,
		touched: touches{last: map[string]time.Time{}}}
	if s.limiter == nil {
		s.limiter = ratelimit.NewLocal()
	}
	if s.nonces == nil {
		s.nonces = signing.NewLocalNonces()
	}
	s.admin = admin
	if nc != nil {
		s.pub = groupcommit.New(groupcommit.Config{MinBatch: cfg.GroupCommitMin, Off: cfg.GroupCommitMin == 0}, nc, js)
	}
	s.bodies.max.Store(cfg.MaxInflightBodyBytes)
	s.keylessBodies.max.Store(max(cfg.MaxInflightBodyBytes/8, keylessBodyMax))
	s.keylessBodies.share = true
	s.routes()
	return s, nil
}

// Start checks the streams it needs were provisioned and starts following
// registry changes.
func (s *Server) Start(ctx context.Context) error {
	if err := provision.Verify(ctx, s.js, provision.NeedEvents|provision.NeedRegistry); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	key, err := provision.DedupKey(ctx, s.js)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	s.dedupKey = []byte(key)
	s.macs.New = func() any { return &mac{h: hmac.New(sha256.New, s.dedupKey), in: make([]byte, 0, 256)} }
	go s.admin.Watch(ctx, s.log)
	go s.watchDependencies(ctx)
	if s.pub != nil && s.stopPub == nil {
		// The publisher outlives ctx: requests still in flight while Serve
		// shuts down must be answered. Serve stops it once they are.
		pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		s.stopPub = stop
		go s.pub.Run(pctx)
	}
	return s.cache.Follow(ctx, s.js)
}

// Reconnected must be called when the NATS connection is re-established.
func (s *Server) Reconnected() { s.cache.Reconnected() }

// Serve serves HTTP on ln until ctx ends, then stops accepting and waits,
// up to 15 s, for requests in flight (and so their publishes) to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serveUntil(ctx, ln, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 15*time.Second)
	})
}

// serveUntil is Serve with the bound of the shutdown given by shutdownCtx,
// called once ctx ends (the component passes its stop's deadline).
func (s *Server) serveUntil(ctx context.Context, ln net.Listener, shutdownCtx func() (context.Context, context.CancelFunc)) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.closingOnce.Do(func() { close(s.closing) })
	sctx, cancel := shutdownCtx()
	defer cancel()
	err := hs.Shutdown(sctx)
	if s.stopPub != nil {
		s.stopPub()
	}
	if err != nil {
		return fmt.Errorf("edge: shutdown: %w", err)
	}
	return nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every answer, errors, 404s and /metrics included: no browser may
	// sniff a JSON answer into something it would run.
	w.Header()["X-Content-Type-Options"] = hvNosniff
	const partners = "/api/v1/partners/"
	if p, ok := strings.CutPrefix(r.URL.Path, partners); ok {
		if code, ok := strings.CutPrefix(p, "by-code/"); ok {
			r.URL.Path = "/api/v1/_by-code/partners/" + code
		} else if id, rest, ok := strings.Cut(p, "/sub-systems/by-code/"); ok && !strings.Contains(id, "/") {
			r.URL.Path = "/api/v1/_by-code/sub-systems/" + id + "/" + rest
		}
	}
	s.router.ServeHTTP(w, r)
}
