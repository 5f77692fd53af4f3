// Package component is the one lifecycle of every part of a process (the
// embedded NATS server, the store, the edge, the workers, the registry,
// the reporter) and the runner that starts and stops them.
package component

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Component is one part of a process.
type Component interface {
	Name() string
	// Start returns once the component runs; ctx bounds the start only.
	Start(ctx context.Context) error
	// Stop undoes Start within ctx: work in hand is finished or left for
	// redelivery, connections are drained.
	Stop(ctx context.Context) error
}

// Func is a component made of two functions; Stop may be nil.
type Func struct {
	N       string
	StartFn func(ctx context.Context) error
	StopFn  func(ctx context.Context) error
}

func (f *Func) Name() string                    { return f.N }
func (f *Func) Start(ctx context.Context) error { return f.StartFn(ctx) }
func (f *Func) Stop(ctx context.Context) error {
	if f.StopFn == nil {
		return nil
	}
	return f.StopFn(ctx)
}

// Group runs components: Start starts them in order, Stop stops the
// started ones in reverse order.
type Group struct {
	log     zerolog.Logger
	comps   []Component
	started int
}

// NewGroup makes a group of comps, started in that order.
func NewGroup(log zerolog.Logger, comps ...Component) *Group {
	return &Group{log: log, comps: comps}
}

// Start starts every component in order. If one fails, it is stopped too
// (whatever it had started half-way), then those already started, within
// stopTimeout, and the error, with any stop errors, is returned naming the
// component. A Stop must therefore be safe after a failed Start.
func (g *Group) Start(ctx context.Context, stopTimeout time.Duration) error {
	for _, c := range g.comps[g.started:] {
		begin := time.Now()
		if err := c.Start(ctx); err != nil {
			err = fmt.Errorf("%s: start: %w", c.Name(), err)
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			if serr := c.Stop(sctx); serr != nil {
				err = errors.Join(err, fmt.Errorf("%s: stop after a failed start: %w", c.Name(), serr))
			}
			return errors.Join(err, g.Stop(sctx))
		}
		g.started++
		g.log.Debug().Str("component", c.Name()).Dur("took", time.Since(begin)).Msg("started")
	}
	return nil
}

// Stop stops the started components in reverse order, every one even if
// another fails, and returns their errors joined, each naming its
// component.
func (g *Group) Stop(ctx context.Context) error {
	var errs []error
	for ; g.started > 0; g.started-- {
		c := g.comps[g.started-1]
		// Each part gets at least minStop, even when one before it used up
		// the deadline: closing connections and files takes no longer.
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if d, ok := ctx.Deadline(); ok && time.Until(d) < minStop {
			cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), minStop)
		}
		err := c.Stop(cctx)
		cancel()
		if err != nil {
			g.log.Error().Err(err).Str("component", c.Name()).Msg("stop failed")
			errs = append(errs, fmt.Errorf("%s: stop: %w", c.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// minStop is the least time a component is given to stop.
const minStop = time.Second

// Run starts comps in order, waits until ctx ends, then stops them in
// reverse order within stopTimeout. It returns every error of the start
// and the stop, each naming its component: the one runner of the binaries
// and the all-in-one.
func Run(ctx context.Context, log zerolog.Logger, stopTimeout time.Duration, comps ...Component) error {
	g := NewGroup(log, comps...)
	if err := g.Start(ctx, stopTimeout); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	return g.Stop(sctx)
}
