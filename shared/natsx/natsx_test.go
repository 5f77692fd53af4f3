package natsx_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/obs"
	"github.com/volcanion/tracking/shared/testenv"
)

func TestCall(t *testing.T) {
	shutdown, err := obs.InitTracing(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	ns := testenv.NATS(t)
	nc, _ := testenv.Conn(t, ns)
	var seenTrace trace.TraceID
	svc, err := micro.AddService(nc, micro.Config{Name: "svc", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	g := svc.AddGroup("trk.svc")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(g.AddEndpoint("echo", natsx.Handler(zerolog.Nop(), "t", "echo", time.Second, func(ctx context.Context, data []byte) (any, error) {
		seenTrace = trace.SpanContextFromContext(ctx).TraceID()
		return map[string]string{"got": string(data)}, nil
	}), micro.WithEndpointSubject("echo")))
	must(g.AddEndpoint("refuse", natsx.Handler(zerolog.Nop(), "t", "refuse", time.Second, func(context.Context, []byte) (any, error) {
		return nil, apierr.Invalid(apierr.FieldError{Field: "name", Message: "is required"})
	}), micro.WithEndpointSubject("refuse")))
	must(g.AddEndpoint("crash", natsx.Handler(zerolog.Nop(), "t", "crash", time.Second, func(context.Context, []byte) (any, error) {
		return nil, errors.New("disk on fire at /secret/path")
	}), micro.WithEndpointSubject("crash")))

	ctx, span := obs.Tracer("test").Start(context.Background(), "call")
	defer span.End()
	var out map[string]string
	if err := natsx.Call(ctx, nc, "trk.svc.echo", "hi", &out); err != nil || out["got"] != `"hi"` {
		t.Fatalf("echo: %v %v", out, err)
	}
	if seenTrace != span.SpanContext().TraceID() || !seenTrace.IsValid() {
		t.Fatal("trace context was not carried over NATS")
	}
	err = natsx.Call(ctx, nc, "trk.svc.refuse", nil, nil)
	if ae := apierr.From(err); ae.Code != apierr.ValidationFailed || len(ae.Fields) != 1 || ae.Fields[0].Field != "name" {
		t.Fatalf("refuse: %+v", err)
	}
	err = natsx.Call(ctx, nc, "trk.svc.crash", nil, nil)
	if ae := apierr.From(err); ae.Code != apierr.Internal || ae.Message != "internal error" {
		t.Fatalf("crash leaked or lost its code: %+v", ae)
	}
	if err := natsx.Call(ctx, nc, "trk.nobody.home", nil, nil); !apierr.Is(err, apierr.Unavailable) {
		t.Fatalf("no responders: %v", err)
	}
}

// A handler that panics, or answers something that cannot be encoded,
// answers internal_error (the panic logged once, with its stack) and the
// service keeps serving.
func TestHandlerPanics(t *testing.T) {
	nc, _ := testenv.Conn(t, testenv.NATS(t))
	svc, err := micro.AddService(nc, micro.Config{Name: "svc", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	g := svc.AddGroup("trk.svc")
	g.AddEndpoint("panic", natsx.Handler(log, "t", "panic", time.Second, func(_ context.Context, data []byte) (any, error) {
		if string(data) == `"boom"` {
			var m map[string]int
			m["x"]++ // nil map: a real runtime panic
		}
		return "fine", nil
	}), micro.WithEndpointSubject("panic"))
	g.AddEndpoint("unencodable", natsx.Handler(log, "t", "unencodable", time.Second, func(context.Context, []byte) (any, error) {
		return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), nil // JSON refuses years past 9999
	}), micro.WithEndpointSubject("unencodable"))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		err := natsx.Call(ctx, nc, "trk.svc.panic", "boom", nil)
		if ae := apierr.From(err); ae.Code != apierr.Internal || ae.Message != "internal error" {
			t.Fatalf("panic %d: %+v", i, err)
		}
		var out string
		if err := natsx.Call(ctx, nc, "trk.svc.panic", "calm", &out); err != nil || out != "fine" {
			t.Fatalf("after panic %d the service stopped serving: %v", i, err)
		}
	}
	if err := natsx.Call(ctx, nc, "trk.svc.unencodable", nil, nil); !apierr.Is(err, apierr.Internal) {
		t.Fatalf("unencodable answer: %v, want internal_error at once", err)
	}
	if n := strings.Count(logs.String(), `"handler panicked"`); n != 3 || !strings.Contains(logs.String(), "natsx_test.go") {
		t.Fatalf("want each panic logged once with its stack; %d lines:\n%s", n, logs.String())
	}
}
