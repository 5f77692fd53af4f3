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
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// Config of the all-in-one process: its own settings, and each
// component's, which the binary takes prefixed (-edge-*, -workers-*,
// -registry-*, -reporter-*, -nats-*; the bus's are -stream-*, -consumer-*
// and -dead-letter-*, as in the registry binary).
type Config struct {
	DataDir    string
	AdminToken string // "" reads or creates DataDir/admin-token
	// NATS is the embedded server: its client port is off (in-process
	// only) unless set; NoSync acknowledges events before they are synced
	// to disk. Its data dir, name and auth are set from DataDir.
	NATS natsembed.Config
	// Edge.Listen is the HTTP API.
	Edge     edge.Config
	Worker   workers.Config
	Registry registry.Config
	// Reporter: its CacheTTL is how long a report answer reaching into
	// the last hour is cached in-process (older ranges: reporter.ClosedTTL);
	// 0 turns the cache off.
	Reporter reporter.Config
	Bus      provision.Config
}

// DefaultConfig is what `make run` uses.
func DefaultConfig() Config {
	rep := reporter.DefaultConfig()
	rep.CacheTTL = 2 * time.Second
	rep.MaxConcurrent = runtime.GOMAXPROCS(0) // Pebble: a report is CPU work
	return Config{DataDir: "./data", Reporter: rep, Edge: edge.DefaultConfig(), Worker: workers.DefaultConfig(),
		Registry: registry.DefaultConfig(), Bus: provision.DefaultConfig()}
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
	comps []component.Component
	group *component.Group // the parts, started in order, stopped in reverse
	edge  *edge.Component
}

// Addr is the HTTP address the app listens on.
func (a *App) Addr() string { return a.edge.Addr().String() }

// Handler is the edge's HTTP handler, for benchmarks that measure it
// without a socket.
func (a *App) Handler() http.Handler { return a.edge.Server() }

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
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (*App, error) {
	a := New(cfg, log)
	a.group = component.NewGroup(log, a.comps...)
	if err := a.group.Start(ctx, stopTimeout); err != nil {
		a.group = nil // stopped already
		return nil, fmt.Errorf("allinone: %w", err)
	}
	return a, nil
}

// New makes the all-in-one's parts, not started: the same components the
// separate binaries run, over one embedded NATS and one Pebble store, in
// start order (Stop goes in reverse).
func New(cfg Config, log zerolog.Logger) *App {
	a := &App{log: log, DataDir: cfg.DataDir, AuthDir: filepath.Join(cfg.DataDir, "nats-auth")}
	ncfg := cfg.NATS
	ncfg.DataDir, ncfg.Name, ncfg.AuthConf = filepath.Join(cfg.DataDir, "nats"), "volcanion", filepath.Join(a.AuthDir, "auth.conf")
	if ncfg.NoSync {
		// Without a sync per write there is nothing for a batch to
		// share, and its set-up costs more than one-by-one publishing.
		cfg.Edge.GroupCommitMin = 0
	}
	var (
		tokens                       admintoken.Config
		admin                        *admintoken.Set // the tokens the edge accepts; the registry, the reporter and the dead-letter service check the one it forwards
		reportCache                  *rcache.Local
		store                        storage.Store
		regNC, repNC, workNC, edgeNC *nats.Conn
	)
	if cfg.Reporter.CacheTTL > 0 {
		reportCache = rcache.NewLocal(reportCacheBytes)
	}
	// Each part connects as its own NATS role, as in production.
	conn := func(role string, nc **nats.Conn) component.Component {
		var onReconnect func()
		if role == "edge" {
			onReconnect = a.edge.Reconnected // changes may have been missed meanwhile
		}
		return natsembed.ConnComponent(&a.ns, role, a.Creds(role), nc, onReconnect)
	}
	js := func(nc *nats.Conn) jetstream.JetStream {
		js, _ := jetstream.New(nc) // fails only on bad options
		return js
	}
	a.edge = edge.NewComponent(&cfg.Edge, &edgeNC, log)
	a.comps = []component.Component{
		&component.Func{N: "data dir",
			StartFn: func(context.Context) (err error) {
				if err := writableDir(cfg.DataDir); err != nil {
					return fmt.Errorf("-data-dir %s: %w", cfg.DataDir, err)
				}
				if a.AdminToken, a.TokenWasCreated, err = adminToken(cfg); err != nil {
					return fmt.Errorf("admin token: %w", err)
				}
				if cfg.AdminToken == "" {
					a.TokenFile = filepath.Join(cfg.DataDir, "admin-token")
				}
				if a.TokenFile != "" && cfg.Edge.AdminTokensFile == "" {
					// The token kept in the data dir is re-read when the
					// file changes, like any tokens file: replace it to
					// rotate without a restart.
					cfg.Edge.AdminTokensFile = a.TokenFile
				} else {
					cfg.Edge.AdminTokens = append(cfg.Edge.AdminTokens, a.AdminToken)
				}
				tokens = admintoken.Config{Tokens: cfg.Edge.AdminTokens, File: cfg.Edge.AdminTokensFile}
				// NATS auth: the production roles, generated once into the data dir.
				if err := natsauth.Init(a.AuthDir); err != nil {
					return fmt.Errorf("nats auth: %w", err)
				}
				return adoptGlobalStreams(ncfg.DataDir, a.AuthDir, log)
			},
		},
		natsembed.Component(ncfg, &a.ns),
		&component.Func{N: "store",
			StartFn: func(context.Context) (err error) {
				if a.store, err = pebblestore.Open(filepath.Join(cfg.DataDir, "store")); err == nil {
					store = storage.Traced(a.store)
				}
				return err
			},
			StopFn: func(context.Context) error {
				if a.store == nil {
					return nil
				}
				return a.store.Close()
			},
		},
		// The all-in-one is its own operator: it runs the provisioning
		// step, as the admin role, on a connection closed once it is done.
		cfg.Bus.Component(func() (*nats.Conn, error) { return a.ConnectAs("admin") }),
		admintoken.Component(&tokens, log, &admin),
		conn("registry", &regNC),
		registry.NewComponent(cfg.Registry, func() registry.Deps {
			return registry.Deps{NC: regNC, JS: js(regNC), Store: store, Admin: admin}
		}, log),
		conn("reporter", &repNC),
		reporter.NewComponent(cfg.Reporter, func() reporter.Deps {
			d := reporter.Deps{NC: repNC, JS: js(repNC), Store: store, Admin: admin}
			if reportCache != nil {
				d.Cache = reportCache
			}
			return d
		}, log),
		conn("workers", &workNC),
		workers.NewComponent(cfg.Worker, func() workers.Deps {
			d := workers.Deps{NC: workNC, JS: js(workNC), Store: store, Admin: admin}
			if reportCache != nil {
				d.Generations = reportCache // late events refresh cached reports of their range
			}
			return d
		}, log),
		conn("edge", &edgeNC),
		a.edge,
	}
	return a
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
  Console      http://%s/console/   (sign in with the admin token)
  HTTP API     http://%s/api/v1   (health: /api/v1/health, metrics: /metrics)
  NATS         %s
  Data         %s
  Admin token  %s
`, a.Addr(), a.Addr(), bus, a.DataDir, token)
	if a.TokenWasCreated {
		fmt.Fprintf(w, "\nFirst start: the admin token was generated. It is shown this once (it stays in %s):\n  %s\n", a.TokenFile, a.AdminToken)
	}
	fmt.Fprintf(w, "\nTry:  curl -s -H %s http://%s/api/v1/partners\nStop with Ctrl-C.\n", auth, a.Addr())
}
