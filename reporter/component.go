package reporter

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/storage"
)

// Deps are what the reporter component takes from earlier components.
type Deps struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Store storage.Store
	Admin *admintoken.Set
	Cache Cache // nil: answers are not cached
}

// Component answers report queries over NATS. The reporter binary and the
// all-in-one both run it.
type Component struct {
	cfg    Config
	deps   func() Deps
	log    zerolog.Logger
	m      *natsx.Served
	s      *Service
	cancel context.CancelFunc // stops following the registry
	done   chan struct{}      // closed when it has stopped
}

// NewComponent makes the reporter component; deps is called at Start.
func NewComponent(cfg Config, deps func() Deps, log zerolog.Logger) *Component {
	return &Component{cfg: cfg, deps: deps, log: log}
}

func (c *Component) Name() string { return "reporter" }

func (c *Component) Start(context.Context) (err error) {
	d := c.deps()
	s := New(d.Store, c.log).WithProgress(d.JS, c.cfg.CompleteSlack).WithAdminTokens(d.Admin).WithMaxConcurrent(c.cfg.MaxConcurrent)
	if d.Cache != nil && c.cfg.CacheTTL > 0 {
		s.WithCache(d.Cache, c.cfg.CacheTTL).WithNearCache(c.cfg.NearCacheBytes).WithNearCheckEvery(c.cfg.NearCheckEvery)
	}
	if d.JS != nil {
		// Renames reach the records kept and the cached answers.
		var ctx context.Context
		ctx, c.cancel = context.WithCancel(context.Background())
		c.done = make(chan struct{})
		go func() {
			defer close(c.done)
			keepFollowing(ctx, d.JS, s.changed, c.log)
		}()
	}
	c.s = s
	c.m, err = s.Start(d.NC)
	return err
}

func (c *Component) Stop(ctx context.Context) error {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	if c.m == nil {
		return nil
	}
	// The component's budget (ctx) bounds the wait for those in flight.
	return c.m.StopWithin(ctx)
}
