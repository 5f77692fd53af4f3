package natsx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/volcanion/tracking/shared/apierr"
)

// Pool runs a service's requests each on a goroutine of its own, at most n
// at once. micro calls an endpoint's handler on its subscription's one
// goroutine: without a pool an endpoint answers one request at a time, and
// a cached answer waits behind any slow one.
//
// Past n a request is refused at once (overloaded, which callers answer
// with 503 and Retry-After), never queued: a queue in the NATS client's
// buffer has no clock, and would hand over requests whose callers gave up
// long ago. Work that waits for a resource inside the limit waits within
// the caller's deadline (CallerDeadline).
type Pool struct {
	nc     *nats.Conn
	max    int
	mu     sync.Mutex
	n      int
	closed bool
	wg     sync.WaitGroup
}

// NewPool makes a pool of at most n requests at once (n ≥ 1) of a service
// on nc.
func NewPool(nc *nats.Conn, n int) *Pool { return &Pool{nc: nc, max: max(n, 1)} }

// Wrap runs h on the pool.
func (p *Pool) Wrap(h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		p.mu.Lock()
		var refused *apierr.Error
		switch {
		case p.closed:
			// A stopping service's subscriptions drain: what they still
			// hand over is refused at once, not run against closed stores.
			refused = apierr.New(apierr.Unavailable, "the service is stopping; try again")
		case p.n >= p.max:
			refused = apierr.New(apierr.Overloaded, "the service holds as many requests as it may (%d); try again shortly", p.max)
		default:
			p.n++
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if refused != nil {
			eb, _ := json.Marshal(refused)
			_ = req.Error(string(refused.Code), refused.Message, eb)
			return
		}
		// micro's own request is not touched past this call: micro reads
		// it (its stats) as soon as the handler returns.
		d := &detached{nc: p.nc, data: req.Data(), headers: req.Headers(), subject: req.Subject(), reply: req.Reply()}
		go func() {
			defer func() {
				p.mu.Lock()
				p.n--
				p.mu.Unlock()
				p.wg.Done()
			}()
			h.Handle(d)
		}()
	})
}

// Close refuses requests from now on and returns when every one taken
// before has been answered, or with ctx's error when ctx ends first.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsx: requests still in flight: %w", ctx.Err())
	}
}

// detached is a request answered off micro's goroutine, straight to its
// reply subject.
type detached struct {
	nc             *nats.Conn
	data           []byte
	headers        micro.Headers
	subject, reply string
}

func (d *detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	if d.reply == "" {
		return errors.New("natsx: the request has no reply subject")
	}
	m := &nats.Msg{Subject: d.reply, Data: data}
	for _, o := range opts {
		o(m)
	}
	return d.nc.PublishMsg(m)
}

func (d *detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("natsx: encode answer: %w", err)
	}
	return d.Respond(b, opts...)
}

func (d *detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	return d.Respond(data, append(opts, micro.WithHeaders(micro.Headers{
		micro.ErrorHeader: {description}, micro.ErrorCodeHeader: {code},
	}))...)
}

func (d *detached) Data() []byte           { return d.data }
func (d *detached) Headers() micro.Headers { return d.headers }
func (d *detached) Subject() string        { return d.subject }
func (d *detached) Reply() string          { return d.reply }

// Served is a micro service whose requests run on pools.
type Served struct {
	micro.Service
	pools []*Pool
	wait  time.Duration
}

// Serving is svc, its requests run on pools; its Stop waits at most wait
// for those in flight (each ends within its handler's timeout).
func Serving(svc micro.Service, wait time.Duration, pools ...*Pool) *Served {
	return &Served{Service: svc, pools: pools, wait: wait}
}

// Stop is StopWithin wait.
func (s *Served) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	return s.StopWithin(ctx)
}

// StopWithin stops taking requests (the queue group's other members get
// them), then waits for those in flight until ctx ends (a component's stop
// budget); what the subscriptions still hand over meanwhile is refused.
func (s *Served) StopWithin(ctx context.Context) error {
	errs := []error{s.Service.Stop()}
	for _, p := range s.pools {
		errs = append(errs, p.Close(ctx))
	}
	return errors.Join(errs...)
}
