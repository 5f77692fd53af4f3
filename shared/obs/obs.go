// Package obs sets up logging and tracing the same way in every service.
package obs

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Log formats: JSON is what production reads and costs least; pretty is
// for people, and costs about a fifth of the edge's throughput (one
// console-formatted line per request), so auto picks it only when the
// output is a terminal.
const (
	FormatAuto   = "auto"
	FormatJSON   = "json"
	FormatPretty = "pretty"
)

// ValidFormat reports whether f is a log format.
func ValidFormat(f string) bool { return f == FormatAuto || f == FormatJSON || f == FormatPretty }

// Pretty resolves a format for output w: auto is pretty only on a terminal.
func Pretty(format string, w io.Writer) bool {
	switch format {
	case FormatPretty:
		return true
	case FormatAuto:
		f, ok := w.(*os.File)
		if !ok {
			return false
		}
		fi, err := f.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	return false
}

// NewLogger makes the process logger at level ("debug", "info", ...);
// pretty switches to human-readable console output.
func NewLogger(w io.Writer, level string, pretty bool) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	if w == nil {
		w = os.Stderr
	}
	if pretty {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// InitTracing installs the process's tracer provider. Every request gets a
// trace id, propagated over NATS and logged. The standard variables turn on
// OTLP export (off by default):
//
//	OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  where to
//	OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_PROTOCOL)  grpc or http/protobuf (the default)
//	OTEL_SERVICE_NAME  the service's name (default: service)
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG  the SDK's samplers (default parentbased_always_on)
//	OTEL_TRACES_EXPORTER=none  off, whatever the endpoint
//
// Without an exporter, spans are not recorded (they still carry ids), so
// tracing off costs next to nothing.
func InitTracing(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	exp, err := traceExporter(ctx)
	if err != nil {
		return nil, err
	}
	if exp == nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		otel.SetTracerProvider(tp)
		return tp.Shutdown, nil
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", service)), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES or OTEL_SERVICE_NAME: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// traceExporter is the OTLP exporter the environment asks for, or nil.
func traceExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	endpoint := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if endpoint == "" || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return nil, nil
	}
	switch protocol := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"); protocol {
	case "grpc":
		return otlptracegrpc.New(ctx) // reads the endpoint and its options from the same variables
	case "http/protobuf":
		return otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: this build exports grpc or http/protobuf", protocol)
	}
}

// Tracer returns a named tracer of the installed provider.
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }
