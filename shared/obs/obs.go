// Package obs sets up logging and tracing the same way in every service.
package obs

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
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

// InitTracing installs a tracer provider so every request gets a real trace
// id, propagated across NATS. Spans are not exported unless an exporter is
// added; the id still ties log lines of one request together across services.
func InitTracing() (shutdown func(context.Context) error) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp.Shutdown
}

// Tracer returns a named tracer of the installed provider.
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }
