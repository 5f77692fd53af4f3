// Package allinone runs the whole system in one process on the embedded
// default: nats-server with JetStream and a Pebble store in one data dir, and
// the four services, each on its own in-process NATS connection: the same
// code path as the production topology, with no shortcut around the bus.
package allinone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/workers"
)

// Config of the all-in-one process.
type Config struct {
	DataDir    string
	HTTPListen string // host:port of the HTTP API
	// NATSListen is host:port where outside clients (internal services, the
	// nats CLI) reach the embedded server; "" keeps it in-process only.
	NATSListen string
	AdminToken string // "" reads or creates DataDir/admin-token
	Workers    int    // consuming loops
	// NoFsync acknowledges events before JetStream has synced them to disk:
	// faster, but a power loss can take up to 2 minutes of 202-answered events.
	NoFsync bool
	Edge    edge.Config
	Worker  workers.Config
	Bus     provision.Config
}

// DefaultConfig is what `make run` uses.
func DefaultConfig() Config {
	return Config{DataDir: "./data", HTTPListen: "127.0.0.1:8080", NATSListen: "127.0.0.1:4222", Workers: 2,
		Edge: edge.DefaultConfig(), Worker: workers.DefaultConfig(), Bus: provision.DefaultConfig()}
}

// App is a running all-in-one.
type App struct {
	AdminToken      string
	TokenWasCreated bool

	log      zerolog.Logger
	ns       *server.Server
	store    *pebblestore.Store
	conns    []*nats.Conn
	services []micro.Service
	ln       net.Listener
	edge     *edge.Server

	httpCancel, workCancel, followCancel context.CancelFunc
	httpDone                             chan error
	workWG                               sync.WaitGroup
}

// Addr is the HTTP address the app listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// NATSURL is where outside clients reach the embedded NATS ("" if in-process only).
func (a *App) NATSURL() string {
	if a.ns.Addr() == nil {
		return ""
	}
	return a.ns.ClientURL()
}

// adminToken returns the configured token, or the one kept in the data dir,
// creating it on first start.
func adminToken(cfg Config) (tok string, created bool, err error) {
	if cfg.AdminToken != "" {
		return cfg.AdminToken, false, nil
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, err
	}
	tok = "vta_" + hex.EncodeToString(b[:])
	return tok, true, os.WriteFile(path, []byte(tok+"\n"), 0o600)
}

// Start brings the system up. On error, whatever was started is stopped.
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (_ *App, err error) {
	a := &App{log: log}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if cfg.Workers < 1 {
		return nil, errors.New("allinone: -workers must be at least 1")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("allinone: data dir: %w", err)
	}
	if a.AdminToken, a.TokenWasCreated, err = adminToken(cfg); err != nil {
		return nil, fmt.Errorf("allinone: admin token: %w", err)
	}
	cfg.Edge.AdminTokens = []string{a.AdminToken}

	ecfg := natsx.EmbeddedConfig{DataDir: filepath.Join(cfg.DataDir, "nats"), Name: "volcanion", NoSync: cfg.NoFsync}
	if cfg.NATSListen != "" {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return nil, fmt.Errorf("allinone: -nats-listen %q: %w", cfg.NATSListen, err)
		}
		ecfg.Host = host
		if _, err := fmt.Sscan(port, &ecfg.Port); err != nil {
			return nil, fmt.Errorf("allinone: -nats-listen port %q: %w", port, err)
		}
	}
	if a.ns, err = natsx.StartEmbedded(ecfg); err != nil {
		return nil, err
	}
	if a.store, err = pebblestore.Open(filepath.Join(cfg.DataDir, "store")); err != nil {
		return nil, err
	}
	conn := func(name string) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := natsx.ConnectInProcess(a.ns, name)
		if err != nil {
			return nil, nil, err
		}
		a.conns = append(a.conns, nc)
		js, err := jetstream.New(nc)
		return nc, js, err
	}

	nc, js, err := conn("registry")
	if err != nil {
		return nil, err
	}
	// The all-in-one is its own operator: it runs the provisioning step.
	if err := provision.Apply(ctx, js, cfg.Bus); err != nil {
		return nil, fmt.Errorf("allinone: %w", err)
	}
	svc, err := registry.New(a.store, js, log).Start(ctx, nc)
	if err != nil {
		return nil, err
	}
	a.services = append(a.services, svc)

	if nc, _, err = conn("reporter"); err != nil {
		return nil, err
	}
	if svc, err = reporter.New(a.store, log).Start(nc); err != nil {
		return nil, err
	}
	a.services = append(a.services, svc)

	if nc, js, err = conn("workers"); err != nil {
		return nil, err
	}
	w := workers.New(cfg.Worker, js, a.store, workers.NewRegistryDirectory(nc, time.Minute), log)
	if svc, err = workers.ServeDeadLetters(nc, js, log); err != nil {
		return nil, err
	}
	a.services = append(a.services, svc)
	if _, err := w.Consumer(ctx); err != nil {
		return nil, err
	}
	var wctx context.Context
	wctx, a.workCancel = context.WithCancel(context.Background())
	a.workWG.Add(1)
	go func(js jetstream.JetStream) {
		defer a.workWG.Done()
		if err := workers.PurgeStored(wctx, js, log); err != nil {
			log.Error().Err(err).Msg("purging stored events stopped")
		}
	}(js)
	for i := 0; i < cfg.Workers; i++ {
		a.workWG.Add(1)
		go func() {
			defer a.workWG.Done()
			if err := w.Run(wctx); err != nil {
				log.Error().Err(err).Msg("worker stopped")
			}
		}()
	}

	if nc, js, err = conn("edge"); err != nil {
		return nil, err
	}
	if a.edge, err = edge.New(cfg.Edge, nc, js, log); err != nil {
		return nil, err
	}
	var fctx context.Context
	fctx, a.followCancel = context.WithCancel(context.Background())
	if err := a.edge.Start(fctx); err != nil {
		return nil, err
	}
	if a.ln, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
		return nil, fmt.Errorf("allinone: -http-listen %s: %w", cfg.HTTPListen, err)
	}
	var hctx context.Context
	hctx, a.httpCancel = context.WithCancel(context.Background())
	a.httpDone = make(chan error, 1)
	go func() { a.httpDone <- a.edge.Serve(hctx, a.ln) }()
	return a, nil
}

// Close stops everything in order: stop HTTP and wait for requests in
// flight (so every 202 is already in the stream), drain the workers (each
// finishes, writes and acks its batch), stop the services, close NATS, then
// the store.
func (a *App) Close() error {
	var errs []error
	if a.httpCancel != nil {
		a.httpCancel()
		if err := <-a.httpDone; err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if a.followCancel != nil {
		a.followCancel()
	}
	if a.workCancel != nil {
		a.workCancel()
		a.workWG.Wait()
	}
	for _, s := range a.services {
		_ = s.Stop()
	}
	for _, nc := range a.conns {
		_ = nc.FlushTimeout(2 * time.Second)
		nc.Close()
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
