package natsx_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

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
	pool = natsx.NewPool(n)
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

// A request whose caller gave up while it waited for a turn is not run:
// the caller's time left travels with it (Trk-Timeout-Ms).
func TestPoolDropsWhatItsCallerGaveUpOn(t *testing.T) {
	var runs atomic.Int32
	hold := make(chan struct{})
	call, _ := pooledService(t, 1, func(ctx context.Context, data []byte) (any, error) {
		if runs.Add(1) == 1 {
			<-hold // the pool's one turn, held
		}
		return "ok", nil
	})
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
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := call(ctx) // queued behind the first, past its caller's time
	cancel()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Code != apierr.Timeout {
		t.Fatalf("a request queued past its deadline: %v, want a timeout", err)
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Served in order on one turn: once the third is answered, the
	// second was taken, and refused without running.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call(ctx); err != nil {
		t.Fatal(err)
	}
	if got := runs.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (the expired request must not run)", got)
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
	go func() { pool.Close(); close(closed) }()
	// Refused once Close has begun, while the first still runs.
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
