package natsx_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/testenv"
)

// pooledService serves fn on "trk.pool.op" through a pool of n.
func pooledService(t *testing.T, n int, fn natsx.HandlerFunc) (call func(ctx context.Context) error, pool *natsx.Pool) {
	t.Helper()
	ns := testenv.NATS(t)
	nc, _ := testenv.Conn(t, ns)
	svc, err := micro.AddService(nc, micro.Config{Name: "pool", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	pool = natsx.NewPool(nc, n)
	h := natsx.Handler(zerolog.Nop(), "t", "op", 30*time.Second, fn)
	if err := svc.AddGroup("trk.pool").AddEndpoint("op", pool.Wrap(h), micro.WithEndpointSubject("op")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription before any call
		t.Fatal(err)
	}
	cnc, _ := testenv.Conn(t, ns)
	return func(ctx context.Context) error {
		var out string
		return natsx.Call(ctx, cnc, "trk.pool.op", "x", &out)
	}, pool
}

// startHeld sends a request its handler holds, and returns once it runs
// (runs counts the handler's calls); its answer comes on the channel.
func startHeld(t *testing.T, call func(context.Context) error, runs *atomic.Int32) <-chan error {
	t.Helper()
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		first <- call(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never ran")
		}
		time.Sleep(time.Millisecond)
	}
	return first
}

// Requests of one endpoint run at once: each waits until all four are
// inside, which never happens when micro serves them one after another.
func TestPoolServesConcurrently(t *testing.T) {
	const n = 4
	var inside atomic.Int32
	all := make(chan struct{})
	call, _ := pooledService(t, n, func(ctx context.Context, _ []byte) (any, error) {
		if inside.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	errs := make(chan error, n)
	for range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- call(ctx)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a request of %d at once: %v (served one at a time?)", n, err)
		}
	}
}

// Past its limit a pool refuses at once (overloaded), never queueing a
// request where no clock runs; a turn given back serves the next.
func TestPoolRefusesPastItsLimit(t *testing.T) {
	var runs atomic.Int32
	hold := make(chan struct{})
	call, _ := pooledService(t, 1, func(ctx context.Context, data []byte) (any, error) {
		if runs.Add(1) == 1 {
			<-hold // the pool's one turn, held
		}
		return "ok", nil
	})
	first := startHeld(t, call, &runs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ae *apierr.Error
	if err := call(ctx); !errors.As(err, &ae) || ae.Code != apierr.Overloaded {
		t.Fatalf("a request past the pool's limit: %v, want overloaded at once", err)
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := call(ctx); err != nil {
		t.Fatalf("with the turn given back: %v", err)
	}
	if got := runs.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (the refused request must not run)", got)
	}
}

// The caller's time left travels with a request (Trk-Timeout-Ms): the
// handler sees it as CallerDeadline, and a request that arrives with none
// left is refused without running.
func TestCallerDeadline(t *testing.T) {
	var runs atomic.Int32
	seen := make(chan time.Time, 1)
	ns := testenv.NATS(t)
	nc, _ := testenv.Conn(t, ns)
	svc, err := micro.AddService(nc, micro.Config{Name: "dl", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	h := natsx.Handler(zerolog.Nop(), "t", "op", 30*time.Second, func(ctx context.Context, _ []byte) (any, error) {
		runs.Add(1)
		dl, _ := natsx.CallerDeadline(ctx)
		seen <- dl
		return "ok", nil
	})
	if err := svc.AddGroup("trk.dl").AddEndpoint("op", h, micro.WithEndpointSubject("op")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cnc, _ := testenv.Conn(t, ns)
	before := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out string
	if err := natsx.Call(ctx, cnc, "trk.dl.op", "x", &out); err != nil {
		t.Fatal(err)
	}
	if dl := <-seen; dl.Before(before.Add(2*time.Second)) || dl.After(time.Now().Add(3*time.Second)) {
		t.Fatalf("CallerDeadline %v, want about 3 s after %v", dl, before)
	}
	m := nats.NewMsg("trk.dl.op")
	m.Data = []byte(`"x"`)
	m.Header.Set(natsx.HeaderTimeout, "0")
	reply, err := cnc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != string(apierr.Timeout) || runs.Load() != 1 {
		t.Fatalf("a request with no time left: code %q, runs %d; want timeout, not run", code, runs.Load())
	}
}

// Close waits for the requests in flight, then refuses new ones at once
// (Unavailable), never running them against what the service closes.
func TestPoolCloseWaitsThenRefuses(t *testing.T) {
	hold, closed := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	var early atomic.Bool
	call, pool := pooledService(t, 4, func(ctx context.Context, _ []byte) (any, error) {
		if runs.Add(1) > 1 {
			return "ok", nil // one taken before Close began
		}
		<-hold
		select {
		case <-closed:
			early.Store(true) // Close returned while this still ran
		default:
		}
		return "ok", nil
	})
	first := startHeld(t, call, &runs)
	go func() { pool.Close(context.Background()); close(closed) }()
	// Refused once Close has begun, while the first still runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := call(ctx)
		cancel()
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Code == apierr.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a request after Close: %v, want unavailable", err)
		}
	}
	ran := runs.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ae *apierr.Error
	if err := call(ctx); !errors.As(err, &ae) || ae.Code != apierr.Unavailable || runs.Load() != ran {
		t.Fatalf("a request after Close: %v, ran: %v; want unavailable, not run", err, runs.Load() != ran)
	}
	close(hold)
	<-closed
	if early.Load() {
		t.Fatal("Close returned before the request in flight ended")
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}
