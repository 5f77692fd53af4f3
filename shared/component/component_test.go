package component_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/component"
)

// recorder makes components that note their starts and stops in order.
type recorder struct{ log []string }

func (r *recorder) comp(name string, startErr, stopErr error) component.Component {
	return &component.Func{N: name,
		StartFn: func(context.Context) error {
			if startErr == nil {
				r.log = append(r.log, "start "+name)
			}
			return startErr
		},
		StopFn: func(context.Context) error { r.log = append(r.log, "stop "+name); return stopErr },
	}
}

func TestRunOrder(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- component.Run(ctx, zerolog.Nop(), time.Second, r.comp("nats", nil, nil), r.comp("store", nil, nil), r.comp("edge", nil, nil))
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "start nats,start store,start edge,stop edge,stop store,stop nats"
	if got := strings.Join(r.log, ","); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// A failed start is stopped itself (what it started half-way), then what
// was started, in reverse; the error names the part.
func TestRunStartFails(t *testing.T) {
	var r recorder
	err := component.Run(context.Background(), zerolog.Nop(), time.Second,
		r.comp("nats", nil, nil), r.comp("store", nil, nil), r.comp("edge", errors.New("port busy"), nil), r.comp("never", nil, nil))
	if err == nil || !strings.Contains(err.Error(), "edge: start: port busy") {
		t.Fatalf("error %v", err)
	}
	if got := strings.Join(r.log, ","); got != "start nats,start store,stop edge,stop store,stop nats" {
		t.Fatalf("got %s", got)
	}
}

// A part that used up the stop deadline does not leave the next ones no
// time at all: each gets at least a second.
func TestStopLeavesEachPartTime(t *testing.T) {
	var left time.Duration
	slow := &component.Func{N: "slow", StartFn: func(context.Context) error { return nil },
		StopFn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	next := &component.Func{N: "next", StartFn: func(context.Context) error { return nil },
		StopFn: func(ctx context.Context) error { d, _ := ctx.Deadline(); left = time.Until(d); return ctx.Err() }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := component.Run(ctx, zerolog.Nop(), 50*time.Millisecond, next, slow)
	if err == nil || !strings.Contains(err.Error(), "slow: stop") || strings.Contains(err.Error(), "next: stop") {
		t.Fatalf("error %v", err)
	}
	if left < 500*time.Millisecond {
		t.Fatalf("the part after a slow one had %v to stop", left)
	}
}

// Every stop runs even when one fails, and every stop error is reported.
func TestRunStopErrors(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := component.Run(ctx, zerolog.Nop(), time.Second,
		r.comp("nats", nil, errors.New("drain timed out")), r.comp("store", nil, nil), r.comp("edge", nil, errors.New("requests in flight")))
	if err == nil || !strings.Contains(err.Error(), "edge: stop: requests in flight") || !strings.Contains(err.Error(), "nats: stop: drain timed out") {
		t.Fatalf("error %v", err)
	}
	if got := strings.Join(r.log, ","); got != "start nats,start store,start edge,stop edge,stop store,stop nats" {
		t.Fatalf("got %s", got)
	}
}
