// Command volcanion runs the whole tracking system in one process on the
// embedded default. Every flag can also be set as VT_<FLAG> (e.g. VT_DATA_DIR).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/volcanion/tracking/deploy/allinone"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/obs"
	"github.com/volcanion/tracking/shared/svc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "volcanion:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := allinone.DefaultConfig()
	fs := flag.NewFlagSet("volcanion", flag.ContinueOnError)
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the NATS stream store and credentials, the event store and the admin token")
	fs.StringVar(&cfg.HTTPListen, "http-listen", cfg.HTTPListen, "address of the HTTP API")
	fs.StringVar(&cfg.NATSListen, "nats-listen", cfg.NATSListen, `host:port where outside NATS clients (internal services, the nats CLI) reach the embedded server, with credentials from <data-dir>/nats-auth (default: none, in-process only)`)
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "admin credential (default: generated once and kept in <data-dir>/admin-token)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "event-persisting worker loops")
	fs.BoolVar(&cfg.NoFsync, "no-fsync", false, "answer 202 before the event is synced to disk: faster, but a power loss can lose up to 2 minutes of accepted events")
	// Every setting of the edge and the workers, prefixed, and the bus's
	// (already named -stream-*, -consumer-*, -dead-letter-*).
	cfg.Edge.RegisterFlags("edge-", fs)
	cfg.Worker.RegisterFlags("workers-", fs)
	fs.Int64Var(&cfg.Edge.MaxInflightBodyBytes, "max-inflight-body-bytes", cfg.Edge.MaxInflightBodyBytes, "the same as -edge-max-inflight-body-bytes (kept for earlier set-ups)")
	cfg.Reporter.RegisterFlags("reporter-", fs)
	fs.DurationVar(&cfg.Reporter.CacheTTL, "report-cache-ttl", cfg.Reporter.CacheTTL, "the same as -reporter-report-cache-ttl (kept for earlier set-ups)")
	memLimit := fs.Int64("memory-limit-mib", 256, "soft memory limit of the process in MiB: the garbage collector works harder near it, so a load peak does not grow the heap to twice what is live (0: none; GOMEMLIMIT, when set, wins)")
	cfg.Bus.RegisterFlags("", fs)
	var logLevel, logFormat string
	svc.RegisterLogFlags(fs, &logLevel, &logFormat)
	debugListen := fs.String("metrics-listen", "127.0.0.1:9464", `address of /metrics, /healthz and /debug/pprof ("" to disable); never the public API port`)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	if cfg.NATSListen != "" {
		if _, _, err := net.SplitHostPort(cfg.NATSListen); err != nil {
			return config.Errorf("nats-listen", "%v", err)
		}
	}
	if err := errors.Join(cfg.Edge.Validate(), cfg.Worker.Validate(), cfg.Reporter.Validate()); err != nil {
		return err
	}
	if err := cfg.Bus.Validate(); err != nil {
		return err
	}
	switch {
	case *memLimit < 0 || (*memLimit > 0 && *memLimit < 64):
		return config.Errorf("memory-limit-mib", "must be 0 (none) or at least 64")
	case *memLimit > 0 && os.Getenv("GOMEMLIMIT") == "":
		debug.SetMemoryLimit(*memLimit << 20)
	}
	log, err := svc.Logger(logLevel, logFormat)
	if err != nil {
		return err
	}
	if *debugListen != "" {
		stop, err := svc.ServeDebug(*debugListen)
		if err != nil {
			return err
		}
		defer stop()
	}
	shutdownTracing, err := obs.InitTracing(context.Background(), "volcanion")
	if err != nil {
		return err
	}
	defer shutdownTracing(context.Background())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := allinone.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	app.Banner(os.Stdout)
	<-ctx.Done()
	log.Info().Msg("shutting down")
	return app.Close()
}
