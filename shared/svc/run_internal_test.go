package svc

import (
	"context"
	"flag"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"

	"github.com/volcanion/tracking/shared/component"
)

// stub is a binary of one component that records a span and asks the
// process to stop, as an operator's SIGINT would.
type stub struct{}

func (stub) RegisterFlags(*flag.FlagSet) {}
func (stub) Validate() error             { return nil }
func (stub) Components(zerolog.Logger) []component.Component {
	return []component.Component{&component.Func{N: "stub", StartFn: func(ctx context.Context) error {
		_, span := otel.Tracer("test").Start(ctx, "work")
		span.End()
		return syscall.Kill(os.Getpid(), syscall.SIGINT)
	}}}
}

// A trace collector that takes connections and never answers does not hold
// the stop past its bound, and the lost spans are reported, not dropped.
func TestStopDoesNotWaitOnAHungCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	saved := os.Args
	defer func() { os.Args = saved }()
	os.Args = []string{"stub", "-shutdown-timeout", "1s", "-metrics-listen", "", "-log-level", "error"}
	start := time.Now()
	err = run("stub", "", stub{})
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("the stop took %v with a hung collector", took)
	}
	if err == nil || !strings.Contains(err.Error(), "sending the last traces") {
		t.Fatalf("error %v, want the lost traces reported", err)
	}
}
