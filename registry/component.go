package registry

import (
	"context"
	"flag"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage"
)

// Config is the registry's own settings.
type Config struct {
	// SharedCacheTTL bounds an entry the registry writes to the shared
	// (Redis) key cache; every change rewrites its entries before this.
	SharedCacheTTL time.Duration

	flagPrefix string
}

// DefaultConfig is the registry's default.
func DefaultConfig() Config { return Config{SharedCacheTTL: 10 * time.Minute} }

// RegisterFlags adds the registry's settings to fs, each name after prefix
// ("" in the registry binary, "registry-" in the all-in-one).
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.DurationVar(&c.SharedCacheTTL, prefix+"shared-cache-ttl", c.SharedCacheTTL, "longest life of an entry in the shared key cache (-redis-url); changes rewrite entries at once, this bounds what a lost write leaves")
}

// Validate checks the settings, naming a bad one.
func (c Config) Validate() error {
	if c.SharedCacheTTL < time.Second || c.SharedCacheTTL > 24*time.Hour {
		return config.Errorf(c.flagPrefix+"shared-cache-ttl", "must be between 1s and 24h")
	}
	return nil
}

// Deps are what the registry component takes from earlier components.
type Deps struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Store storage.Store
	Admin *admintoken.Set
	Cache *rcache.Cache // the shared key cache; nil: none
}

// Component serves the registry over NATS. The registry binary and the
// all-in-one both run it.
type Component struct {
	cfg  Config
	deps func() Deps
	log  zerolog.Logger
	m    *natsx.Served
	stop context.CancelFunc
}

// NewComponent makes the registry component; deps is called at Start.
func NewComponent(cfg Config, deps func() Deps, log zerolog.Logger) *Component {
	return &Component{cfg: cfg, deps: deps, log: log}
}

func (c *Component) Name() string { return "registry" }

func (c *Component) Start(ctx context.Context) (err error) {
	d := c.deps()
	s := New(d.Store, d.JS, c.log).WithCache(d.Cache).WithAdminTokens(d.Admin)
	s.sharedTTL = c.cfg.SharedCacheTTL
	// The heartbeat outlives the start's context: Stop ends it.
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	c.m, err = s.Start(hctx, d.NC)
	return err
}

func (c *Component) Stop(ctx context.Context) error {
	if c.stop != nil {
		c.stop()
	}
	if c.m == nil {
		return nil
	}
	// The component's budget (ctx) bounds the wait for those in flight.
	return c.m.StopWithin(ctx)
}
