// Package svc is the lifecycle every service binary shares: logging,
// tracing, signals, and a small HTTP listener for /metrics, /healthz and
// /debug/pprof (never on a public port).
package svc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/obs"
	"github.com/volcanion/tracking/shared/rcache"
)

// Common are the flags every service has.
type Common struct {
	LogLevel        string
	LogFormat       string
	MetricsListen   string
	ShutdownTimeout time.Duration
}

// RegisterFlags adds -log-level, -log-format, -metrics-listen and
// -shutdown-timeout.
func (c *Common) RegisterFlags(fs *flag.FlagSet, metricsDefault string) {
	RegisterLogFlags(fs, &c.LogLevel, &c.LogFormat)
	fs.StringVar(&c.MetricsListen, "metrics-listen", metricsDefault, `address of /metrics, /healthz and /debug/pprof ("" to disable); keep it off public networks`)
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "longest a stop may take: requests in flight answered, batches in hand written, connections drained")
}

// Validate checks the common settings, naming a bad one.
func (c Common) Validate() error {
	if c.ShutdownTimeout < time.Second || c.ShutdownTimeout > 10*time.Minute {
		return config.Errorf("shutdown-timeout", "must be between 1s and 10m")
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return config.Errorf("metrics-listen", "%v", err)
		}
	}
	if !obs.ValidFormat(c.LogFormat) {
		return config.Errorf("log-format", "%q is not json, pretty or auto", c.LogFormat)
	}
	return nil
}

// RegisterLogFlags adds -log-level and -log-format.
func RegisterLogFlags(fs *flag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(format, "log-format", obs.FormatAuto, "json, pretty (human-readable, slower), or auto: pretty on a terminal, JSON otherwise")
}

// Logger makes the process logger from the log flags, naming a bad one.
func Logger(level, format string) (zerolog.Logger, error) {
	if !obs.ValidFormat(format) {
		return zerolog.Nop(), config.Errorf("log-format", "%q is not json, pretty or auto", format)
	}
	log, err := obs.NewLogger(os.Stderr, level, obs.Pretty(format, os.Stderr))
	if err != nil {
		return log, config.Errorf("log-level", "%v", err)
	}
	return log, nil
}

// DebugMux serves /metrics, /healthz and the Go profiler (/debug/pprof/):
// for the metrics listener only, never the public API port.
func DebugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// ServeDebug serves DebugMux on addr until the returned stop is called.
func ServeDebug(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, config.Errorf("metrics-listen", "%v", err)
	}
	// No write timeout: a CPU profile streams for its whole duration.
	hs := &http.Server{Handler: DebugMux(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	return func() { hs.Close() }, nil
}

// Binary is what a process is made of: its settings and its components.
// The four service binaries and the all-in-one are each one Binary run by
// Main, over different sets of the same components.
type Binary interface {
	// RegisterFlags adds the binary's settings to fs.
	RegisterFlags(fs *flag.FlagSet)
	// Validate checks the settings, naming a bad one; it changes nothing.
	Validate() error
	// Components are the parts of the process, in start order.
	Components(log zerolog.Logger) []component.Component
}

// Job is a Binary that may run a one-off step (a schema migration, a
// provisioning) instead of its components: ran reports whether it did.
type Job interface {
	Job(ctx context.Context, log zerolog.Logger) (ran bool, err error)
}

// Main is the one runner of every binary: it parses the settings (flags or
// VT_<FLAG>), validates them, sets up logs, tracing and the metrics
// listener, starts b's components in order, and stops them in reverse on
// SIGINT or SIGTERM within -shutdown-timeout. Any start or stop error is
// printed naming its component, and the process exits 1.
func Main(name, metricsDefault string, b Binary) {
	if err := run(name, metricsDefault, b); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(name, metricsDefault string, b Binary) (err error) {
	var c Common
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.RegisterFlags(fs, metricsDefault)
	b.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	if err := errors.Join(c.Validate(), b.Validate()); err != nil {
		return err
	}
	if m, ok := b.(interface{ MinShutdown() time.Duration }); ok && c.ShutdownTimeout < m.MinShutdown() {
		return config.Errorf("shutdown-timeout", "must be at least %s here: a stopping worker may take its shutdown grace, then the rest stop", m.MinShutdown())
	}
	log, err := Logger(c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	shutdownTracing, err := obs.InitTracing(context.Background(), name)
	if err != nil {
		return err
	}
	// The last spans are sent on every way out, within a bound of their own:
	// a collector that does not answer must not hold the stop.
	defer func() {
		tctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, c.ShutdownTimeout))
		defer cancel()
		if terr := shutdownTracing(tctx); terr != nil {
			terr = fmt.Errorf("sending the last traces: %w", terr)
			log.Error().Err(terr).Msg("tracing")
			err = errors.Join(err, terr)
		}
	}()
	log = log.With().Str("process", name).Logger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if j, ok := b.(Job); ok {
		if ran, err := j.Job(ctx, log); ran || err != nil {
			return err
		}
	}
	if c.MetricsListen != "" {
		stop, err := ServeDebug(c.MetricsListen)
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info().Msg("starting")
	if err := component.Run(ctx, log, c.ShutdownTimeout, b.Components(log)...); err != nil {
		log.Error().Err(err).Msg("stopped with an error")
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// Redis opens the shared cache for -redis-url; "" means none (nil). Redis
// being down at start is logged, not fatal: the client reconnects, and every
// cache use falls back to the source of truth meanwhile.
func Redis(ctx context.Context, url string, log zerolog.Logger) (*rcache.Cache, error) {
	if url == "" {
		return nil, nil
	}
	c, err := rcache.New(url, "trk:")
	if err != nil {
		return nil, config.Errorf("redis-url", "%v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		log.Warn().Err(err).Msg("Redis is not answering yet; running on without the shared cache until it does")
	}
	return c, nil
}

// RedisComponent opens the shared cache for url into *out at start ("":
// none, *out stays nil) and closes it at stop.
func RedisComponent(url string, log zerolog.Logger, out **rcache.Cache) component.Component {
	return &component.Func{N: "redis",
		StartFn: func(ctx context.Context) (err error) { *out, err = Redis(ctx, url, log); return err },
		StopFn: func(context.Context) error {
			if *out == nil {
				return nil
			}
			return (*out).Close()
		},
	}
}

// CheckRedisURL validates a -redis-url value ("" is valid: no cache).
func CheckRedisURL(url string) error {
	if url == "" {
		return nil
	}
	if _, err := rcache.New(url, ""); err != nil {
		return config.Errorf("redis-url", "%v", err)
	}
	return nil
}
