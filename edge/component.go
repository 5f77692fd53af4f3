package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge/internal/ratelimit"
	"github.com/volcanion/tracking/shared/signing"
)

// Component runs the edge in a process: it follows the registry's changes
// and serves the HTTP API on cfg.Listen, over the NATS connection an
// earlier component set in *nc. The edge binary and the all-in-one both
// run it.
type Component struct {
	cfg *Config
	nc  **nats.Conn
	log zerolog.Logger

	srv        atomic.Pointer[Server]
	ln         net.Listener
	stopHTTP   context.CancelFunc
	stopFollow context.CancelFunc
	served     chan error
	stopCtx    chan context.Context // Stop's context: the bound of the HTTP shutdown
}

// NewComponent makes the edge component. *cfg is read at Start, so earlier
// components may complete it (cfg.Shared); *nc must be set by then.
func NewComponent(cfg *Config, nc **nats.Conn, log zerolog.Logger) *Component {
	return &Component{cfg: cfg, nc: nc, log: log}
}

func (c *Component) Name() string { return "edge" }

// Server is the running edge (nil before Start).
func (c *Component) Server() *Server { return c.srv.Load() }

// Addr is where the HTTP API listens (nil before Start).
func (c *Component) Addr() net.Addr {
	if c.ln == nil {
		return nil
	}
	return c.ln.Addr()
}

// Reconnected tells the edge its NATS connection came back: changes may
// have been missed meanwhile. Safe before Start and from any goroutine.
func (c *Component) Reconnected() {
	if s := c.srv.Load(); s != nil {
		s.Reconnected()
	}
}

// Start builds the edge, starts following the registry and listens. ctx
// bounds the start only.
func (c *Component) Start(ctx context.Context) error {
	cfg := *c.cfg
	if rc := cfg.Shared.Client(); rc != nil && cfg.Limiter == nil {
		// Limits and nonces shared across edges.
		cfg.Limiter = ratelimit.NewRedis(rc, cfg.RateLimitEdges)
		cfg.Nonces = signing.RedisNonces{C: rc}
	}
	js, err := jetstream.New(*c.nc)
	if err != nil {
		return err
	}
	srv, err := New(cfg, *c.nc, js, c.log)
	if err != nil {
		return err
	}
	c.srv.Store(srv)
	fctx, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
	c.stopFollow = stopFollow
	if err := srv.Start(fctx); err != nil {
		return err
	}
	if c.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("-%shttp-listen %s: %w", cfg.flagPrefix, cfg.Listen, err)
	}
	c.log.Info().Str("addr", c.ln.Addr().String()).Msg("listening")
	hctx, stopHTTP := context.WithCancel(context.Background())
	c.stopHTTP, c.served, c.stopCtx = stopHTTP, make(chan error, 1), make(chan context.Context, 1)
	go func() {
		c.served <- srv.serveUntil(hctx, c.ln, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(<-c.stopCtx) // requests in flight have until the stop's deadline
		})
	}()
	return nil
}

// Stop stops accepting requests and waits, within ctx, for those in flight
// to be answered, so every 202 is already in the stream.
func (c *Component) Stop(ctx context.Context) error {
	var err error
	if c.stopHTTP != nil {
		c.stopCtx <- ctx
		c.stopHTTP()
		select {
		case e := <-c.served:
			if e != nil && !errors.Is(e, net.ErrClosed) {
				err = e
			}
		case <-ctx.Done():
			err = fmt.Errorf("requests still in flight: %w", ctx.Err())
		}
	}
	if c.stopFollow != nil {
		c.stopFollow()
	}
	if s := c.srv.Load(); s != nil && c.served == nil && s.stopPub != nil {
		s.stopPub() // Serve never ran to stop the publisher (a failed start)
	}
	return err
}
