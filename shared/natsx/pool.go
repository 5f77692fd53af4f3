package natsx

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/volcanion/tracking/shared/apierr"
)

// Pool runs a service's requests each on a goroutine of its own, at most n
// at once. micro calls an endpoint's handler on its subscription's one
// goroutine: without a pool an endpoint answers one request at a time, and
// a cached answer waits behind any slow one. Past n the subscription waits
// (its messages queue in the client, each within its caller's deadline).
type Pool struct {
	sem    chan struct{}
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// NewPool makes a pool of at most n requests at once (n ≥ 1).
func NewPool(n int) *Pool { return &Pool{sem: make(chan struct{}, max(n, 1))} }

// Wrap runs h on the pool.
func (p *Pool) Wrap(h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		queued := time.Now()
		p.sem <- struct{}{}
		if ms, ok := budget(req.Headers()); ok {
			// The time it waited for a turn is the caller's too.
			left := ms - time.Since(queued).Milliseconds()
			req.Headers()[HeaderTimeout] = []string{strconv.FormatInt(max(left, 0), 10)}
		}
		p.mu.Lock()
		if p.closed {
			// A stopping service's subscriptions drain: what they still
			// hand over is refused at once, not run against closed stores.
			p.mu.Unlock()
			<-p.sem
			ae := apierr.New(apierr.Unavailable, "the service is stopping; try again")
			eb, _ := json.Marshal(ae)
			_ = req.Error(string(ae.Code), ae.Message, eb)
			return
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer func() { <-p.sem; p.wg.Done() }()
			h.Handle(req)
		}()
	})
}

// Close refuses requests from now on and returns when every one taken
// before has been answered.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}
