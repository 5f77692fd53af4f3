package workers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/keyauth"
	"github.com/volcanion/tracking/shared/storage"
)

// Deps are what the workers component takes from earlier components.
type Deps struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Store storage.Events
	// Admin checks the credential edges forward to the dead-letter service.
	Admin *admintoken.Set
	// Generations, if not nil, is told about late events (the report cache).
	Generations Generations
}

// Component runs cfg.Loops consuming loops, the purge of stored events and
// the dead-letter service. The workers binary and the all-in-one both run it.
type Component struct {
	cfg  Config
	deps func() Deps
	log  zerolog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   []error
	dlq    micro.Service
}

// NewComponent makes the workers component; deps is called at Start, once
// the components it names have started.
func NewComponent(cfg Config, deps func() Deps, log zerolog.Logger) *Component {
	return &Component{cfg: cfg, deps: deps, log: log}
}

func (c *Component) Name() string { return "workers" }

func (c *Component) Start(ctx context.Context) (err error) {
	d := c.deps()
	w := New(c.cfg, d.JS, d.Store, NewRegistryDirectory(d.NC, time.Minute), c.log)
	if d.Generations != nil {
		w.WithGenerations(d.Generations) // late events refresh cached reports of their range
	}
	if _, err := w.Consumer(ctx); err != nil {
		return err
	}
	keys := keyauth.New(d.NC, RegistryPartner(d.NC))
	if c.dlq, err = ServeDeadLetters(d.NC, d.JS, d.Admin, keys, c.log); err != nil {
		return err
	}
	// The loops outlive the start's context: Stop ends them.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := PurgeStored(wctx, d.JS, c.log); err != nil {
			c.log.Error().Err(err).Msg("purging stored events stopped")
		}
	}()
	c.errs = make([]error, c.cfg.Loops)
	for i := range c.errs {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if c.errs[i] = w.Run(wctx); c.errs[i] != nil {
				c.log.Error().Err(c.errs[i]).Msg("worker stopped")
			}
		}()
	}
	return nil
}

// Stop ends the loops; each finishes, writes and acks its batch (within
// -shutdown-grace) first. Then the dead-letter service stops.
func (c *Component) Stop(ctx context.Context) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("loops still writing: %w", ctx.Err())
	}
	errs := c.errs
	if c.dlq != nil {
		errs = append(errs, c.dlq.Stop())
	}
	return errors.Join(errs...)
}

var _ component.Component = (*Component)(nil)
