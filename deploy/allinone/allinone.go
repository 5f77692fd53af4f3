// Package allinone runs the whole system in one process on the embedded
// default: nats-server with JetStream and a Pebble store in one data dir, and
// the four services, each on its own in-process NATS connection: the same
// code path as the production topology, with no shortcut around the bus.
//
// The embedded NATS is no way around the admin credential. It runs in
// operator mode with the production roles (shared/natsauth), generated into
// <data-dir>/nats-auth: each service connects with its own role's
// credentials, even in-process, and the registry, the reporter and the
// dead-letter service check the credential the edge forwards. Its client port is off unless
// -nats-listen opens it; clients then need a .creds file from that directory
// (or a partner's, minted by natsauth partner).
package allinone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsauth"
	"github.com/volcanion/tracking/shared/natsembed"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/workers"
)

// reportCacheBytes bounds the all-in-one's in-process report cache.
const reportCacheBytes = 32 << 20

// Config of the all-in-one process.
type Config struct {
	DataDir    string
	HTTPListen string // host:port of the HTTP API
	// NATSListen is host:port where outside clients (internal services, the
	// nats CLI) reach the embedded server, with credentials from
	// <DataDir>/nats-auth; "" (the default) keeps it in-process only.
	NATSListen string
	AdminToken string // "" reads or creates DataDir/admin-token
	Workers    int    // consuming loops
	// NoFsync acknowledges events before JetStream has synced them to disk:
	// faster, but a power loss can take up to 2 minutes of 202-answered events.
	NoFsync bool
	// Reporter: its CacheTTL is how long a report answer reaching into
	// the last hour is cached in-process (older ranges: reporter.ClosedTTL);
	// 0 turns the cache off.
	Reporter reporter.Config
	Edge     edge.Config
	Worker   workers.Config
	Bus      provision.Config
}

// DefaultConfig is what `make run` uses.
func DefaultConfig() Config {
	rep := reporter.DefaultConfig()
	rep.CacheTTL = 2 * time.Second
	return Config{DataDir: "./data", HTTPListen: "127.0.0.1:8080", Workers: 2, Reporter: rep,
		Edge: edge.DefaultConfig(), Worker: workers.DefaultConfig(), Bus: provision.DefaultConfig()}
}

// App is a running all-in-one.
type App struct {
	AdminToken      string
	TokenWasCreated bool
	// TokenFile is where the admin token is kept ("" when it was given as a setting).
	TokenFile string
	// AuthDir holds the NATS keys and one <role>.creds per role (0600 files).
	AuthDir string
	// DataDir is the configured data directory.
	DataDir string

	log   zerolog.Logger
	ns    *server.Server
	store *pebblestore.Store
	group *component.Group // the parts, started in order, stopped in reverse
	ln    net.Listener
	edge  *edge.Server

	httpCancel, workCancel, followCancel context.CancelFunc
	httpDone                             chan error
	workWG                               sync.WaitGroup
}

// Addr is the HTTP address the app listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Handler is the edge's HTTP handler, for benchmarks that measure it
// without a socket.
func (a *App) Handler() http.Handler { return a.edge }

// ConnectAs connects in-process as one of the NATS roles (tools and
// benchmarks: "admin" may pause the workers' consumer). The caller closes it.
func (a *App) ConnectAs(role string) (*nats.Conn, error) {
	creds, err := natsx.Credentials(a.Creds(role))
	if err != nil {
		return nil, err
	}
	return natsembed.Connect(a.ns, role, creds...)
}

// NATSURL is where outside clients reach the embedded NATS ("" if in-process only).
func (a *App) NATSURL() string {
	if a.ns.Addr() == nil {
		return ""
	}
	return a.ns.ClientURL()
}

// Creds is the credentials file of a NATS role (natsauth.Roles).
func (a *App) Creds(role string) string { return filepath.Join(a.AuthDir, role+".creds") }

// writableDir makes dir if needed and proves it writable: a read-only
// directory fails here, naming the setting, not later inside a store.
func writableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
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
	if err := writableDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("allinone: -data-dir %s: %w", cfg.DataDir, err)
	}
	a.DataDir = cfg.DataDir
	if a.AdminToken, a.TokenWasCreated, err = adminToken(cfg); err != nil {
		return nil, fmt.Errorf("allinone: admin token: %w", err)
	}
	if cfg.AdminToken == "" {
		a.TokenFile = filepath.Join(cfg.DataDir, "admin-token")
	}
	if a.TokenFile != "" && cfg.Edge.AdminTokensFile == "" {
		// The token kept in the data dir is re-read when the file changes,
		// like any tokens file: replace it to rotate without a restart.
		cfg.Edge.AdminTokens, cfg.Edge.AdminTokensFile = nil, a.TokenFile
	} else {
		cfg.Edge.AdminTokens = []string{a.AdminToken}
	}
	// The registry, the reporter and the dead-letter service check the token
	// the edge forwards against the same tokens the edge accepts (set by
	// the admin tokens part below).
	var admin *admintoken.Set

	// NATS auth: the production roles, generated once into the data dir.
	a.AuthDir = filepath.Join(cfg.DataDir, "nats-auth")
	if err := natsauth.Init(a.AuthDir); err != nil {
		return nil, fmt.Errorf("allinone: nats auth: %w", err)
	}
	ecfg := natsembed.Config{DataDir: filepath.Join(cfg.DataDir, "nats"), Name: "volcanion", NoSync: cfg.NoFsync,
		AuthConf: filepath.Join(a.AuthDir, "auth.conf")}
	if err := adoptGlobalStreams(ecfg.DataDir, a.AuthDir, log); err != nil {
		return nil, fmt.Errorf("allinone: %w", err)
	}
	if cfg.NATSListen != "" {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return nil, fmt.Errorf("allinone: -nats-listen %q: %w", cfg.NATSListen, err)
		}
		ecfg.Host = host
		if _, err := fmt.Sscan(port, &ecfg.Port); err != nil {
			return nil, fmt.Errorf("allinone: -nats-listen port %q: %w", port, err)
		}
		if ecfg.Port > 0 {
			// Fail at once on a busy port: the embedded server would
			// only time out, without saying why.
			ln, err := net.Listen("tcp", cfg.NATSListen)
			if err != nil {
				return nil, fmt.Errorf("allinone: -nats-listen %s: %w", cfg.NATSListen, err)
			}
			ln.Close()
		}
	}
	// The parts, in start order; Close stops them in reverse. They are the
	// same components the separate binaries run (package component).
	var (
		reportCache *rcache.Local
		store       storage.Store
	)
	if cfg.Reporter.CacheTTL > 0 {
		reportCache = rcache.NewLocal(reportCacheBytes)
	}
	// conn connects a part as its own role, as in production; the part
	// closes it when it stops.
	conn := func(name string) (*nats.Conn, jetstream.JetStream, error) {
		creds, err := natsx.Credentials(a.Creds(name))
		if err != nil {
			return nil, nil, err
		}
		nc, err := natsembed.Connect(a.ns, name, creds...)
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
		}
		return nc, js, err
	}
	closeConn := func(nc *nats.Conn) error {
		if nc == nil {
			return nil
		}
		err := nc.FlushTimeout(2 * time.Second)
		nc.Close()
		return err
	}
	var regNC, repNC, workNC, edgeNC *nats.Conn
	var regSvc, repSvc, dlqSvc micro.Service
	a.group = component.NewGroup(log,
		&component.Func{N: "nats",
			StartFn: func(context.Context) (err error) { a.ns, err = natsembed.Start(ecfg); return err },
			StopFn:  func(context.Context) error { a.ns.Shutdown(); a.ns.WaitForShutdown(); return nil },
		},
		&component.Func{N: "store",
			StartFn: func(context.Context) (err error) {
				if a.store, err = pebblestore.Open(filepath.Join(cfg.DataDir, "store")); err == nil {
					store = storage.Traced(a.store)
				}
				return err
			},
			StopFn: func(context.Context) error { return a.store.Close() },
		},
		// The all-in-one is its own operator: it runs the provisioning
		// step, as the admin role, on a connection closed once it is done.
		&component.Func{N: "provision",
			StartFn: func(ctx context.Context) error {
				nc, js, err := conn("admin")
				if err != nil {
					return err
				}
				defer nc.Close()
				return provision.Apply(ctx, js, cfg.Bus)
			},
		},
		admintoken.Component(admintoken.Config{Tokens: cfg.Edge.AdminTokens, File: cfg.Edge.AdminTokensFile}, log, &admin),
		&component.Func{N: "registry",
			StartFn: func(ctx context.Context) error {
				nc, js, err := conn("registry")
				if err != nil {
					return err
				}
				regNC = nc
				regSvc, err = registry.New(store, js, log).WithAdminTokens(admin).Start(ctx, nc)
				return err
			},
			StopFn: func(context.Context) error { return errors.Join(regSvc.Stop(), closeConn(regNC)) },
		},
		// The reporter checks the admin token or partner key the edge
		// forwards, and caches answers in-process (no Redis here).
		&component.Func{N: "reporter",
			StartFn: func(context.Context) error {
				nc, js, err := conn("reporter")
				if err != nil {
					return err
				}
				repNC = nc
				rep := reporter.New(store, log).WithProgress(js, cfg.Reporter.CompleteSlack).WithAdminTokens(admin)
				if reportCache != nil {
					rep.WithCache(reportCache, cfg.Reporter.CacheTTL)
				}
				repSvc, err = rep.Start(nc)
				return err
			},
			StopFn: func(context.Context) error { return errors.Join(repSvc.Stop(), closeConn(repNC)) },
		},
		&component.Func{N: "workers",
			StartFn: func(ctx context.Context) error {
				nc, js, err := conn("workers")
				if err != nil {
					return err
				}
				workNC = nc
				w := workers.New(cfg.Worker, js, store, workers.NewRegistryDirectory(nc, time.Minute), log)
				if reportCache != nil {
					w.WithGenerations(reportCache) // late events refresh cached reports of their range
				}
				if dlqSvc, err = workers.ServeDeadLetters(nc, js, admin, log); err != nil {
					return err
				}
				if _, err := w.Consumer(ctx); err != nil {
					return err
				}
				var wctx context.Context
				wctx, a.workCancel = context.WithCancel(context.Background())
				a.workWG.Add(1)
				go func() {
					defer a.workWG.Done()
					if err := workers.PurgeStored(wctx, js, log); err != nil {
						log.Error().Err(err).Msg("purging stored events stopped")
					}
				}()
				for i := 0; i < cfg.Workers; i++ {
					a.workWG.Add(1)
					go func() {
						defer a.workWG.Done()
						if err := w.Run(wctx); err != nil {
							log.Error().Err(err).Msg("worker stopped")
						}
					}()
				}
				return nil
			},
			// Each loop finishes, writes and acks its batch first.
			StopFn: func(context.Context) error {
				if a.workCancel != nil {
					a.workCancel()
					a.workWG.Wait()
				}
				var err error
				if dlqSvc != nil {
					err = dlqSvc.Stop()
				}
				return errors.Join(err, closeConn(workNC))
			},
		},
		&component.Func{N: "edge",
			StartFn: func(context.Context) error {
				nc, js, err := conn("edge")
				if err != nil {
					return err
				}
				edgeNC = nc
				if cfg.NoFsync {
					// Without a sync per write there is nothing for a batch
					// to share, and its set-up costs more than one-by-one
					// publishing.
					cfg.Edge.GroupCommitMin = 0
				}
				if a.edge, err = edge.New(cfg.Edge, nc, js, log); err != nil {
					return err
				}
				var fctx context.Context
				fctx, a.followCancel = context.WithCancel(context.Background())
				if err := a.edge.Start(fctx); err != nil {
					return err
				}
				if a.ln, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
					return fmt.Errorf("-http-listen %s: %w", cfg.HTTPListen, err)
				}
				var hctx context.Context
				hctx, a.httpCancel = context.WithCancel(context.Background())
				a.httpDone = make(chan error, 1)
				go func() { a.httpDone <- a.edge.Serve(hctx, a.ln) }()
				return nil
			},
			// Stop HTTP and wait for requests in flight, so every 202 is
			// already in the stream.
			StopFn: func(context.Context) error {
				var err error
				if a.httpCancel != nil {
					a.httpCancel()
					if e := <-a.httpDone; e != nil && !errors.Is(e, net.ErrClosed) {
						err = e
					}
				}
				if a.followCancel != nil {
					a.followCancel()
				}
				return errors.Join(err, closeConn(edgeNC))
			},
		},
	)
	if err := a.group.Start(ctx, stopTimeout); err != nil {
		a.group = nil // stopped already
		return nil, fmt.Errorf("allinone: %w", err)
	}
	return a, nil
}

// stopTimeout bounds Close.
const stopTimeout = 30 * time.Second

// Close stops the parts in reverse order: HTTP (requests in flight
// answered, so every 202 is in the stream), the workers (each finishes,
// writes and acks its batch), the reporter and registry, the store, then
// NATS. It reports every part's stop error.
func (a *App) Close() error {
	if a.group == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := a.group.Stop(ctx)
	a.group = nil
	return err
}

// adoptGlobalStreams moves the streams of a data dir made before the
// embedded NATS had accounts (kept under the global account, $G) to the TRK
// account, so the events not yet stored in it are not left behind. JetStream
// files name no account (their checksums are keyed by stream name), so a
// rename is the whole move. It runs before the server starts.
func adoptGlobalStreams(natsDir, authDir string, log zerolog.Logger) error {
	acc, err := natsauth.AccountKey(authDir)
	if err != nil {
		return err
	}
	root := filepath.Join(natsDir, "jetstream", server.JetStreamStoreDir)
	old, dst := filepath.Join(root, server.DEFAULT_GLOBAL_ACCOUNT), filepath.Join(root, acc)
	if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("both %s and %s hold streams: move one away", old, dst)
	}
	if err := os.Rename(old, dst); err != nil {
		return fmt.Errorf("moving the streams to the TRK account: %w", err)
	}
	log.Info().Str("from", old).Str("to", dst).Msg("streams moved to the TRK account")
	return nil
}

// Banner writes what an operator needs after a start. Standard output is
// usually the log stream, so it shows where the admin token is kept, never
// the token, except on the first start, when it was just generated and
// shown this once.
func (a *App) Banner(w io.Writer) {
	bus := "in-process only (-nats-listen opens a port)"
	if u := a.NATSURL(); u != "" {
		bus = u + " (credentials: " + filepath.Join(a.AuthDir, "<role>.creds") + ")"
	}
	token, auth := "from "+config.EnvName("admin-token")+" or -admin-token", `"Authorization: Bearer $TOKEN"`
	if a.TokenFile != "" {
		token = "kept in " + a.TokenFile
		auth = `"Authorization: Bearer $(cat ` + a.TokenFile + `)"`
	}
	fmt.Fprintf(w, `
Volcanion Tracking is running.
  HTTP API     http://%s/api/v1   (health: /api/v1/health, metrics: /metrics)
  NATS         %s
  Data         %s
  Admin token  %s
`, a.Addr(), bus, a.DataDir, token)
	if a.TokenWasCreated {
		fmt.Fprintf(w, "\nFirst start: the admin token was generated. It is shown this once (it stays in %s):\n  %s\n", a.TokenFile, a.AdminToken)
	}
	fmt.Fprintf(w, "\nTry:  curl -s -H %s http://%s/api/v1/partners\nStop with Ctrl-C.\n", auth, a.Addr())
}
