// Package natsembed runs nats-server inside the process: the all-in-one's
// bus and the tests'. Only what embeds a server links nats-server.
package natsembed

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
)

// Config configures an in-process nats-server with JetStream.
type Config struct {
	// DataDir holds the JetStream file store (under DataDir/jetstream).
	DataDir string
	// Host and Port are where outside clients connect; Host "" accepts
	// in-process connections only. Port -1 picks a free port.
	Host string
	Port int
	// Name of the server, shown in monitoring.
	Name string
	// AuthConf, if set, is an operator-mode auth file (natsauth.Init's
	// auth.conf): every client, in-process ones too, then needs a user of the
	// TRK account, and JetStream keeps that account's streams under
	// <DataDir>/jetstream/jetstream/<account public key>.
	AuthConf string
	// NoSync lets JetStream acknowledge a publish before it is on disk (the
	// server's default: fsync every 2 minutes). Off, every write is synced
	// before its PubAck, so a 202 survives a power loss.
	NoSync bool

	flagPrefix string
}

// RegisterFlags adds the embedded server's settings to fs, each name after
// prefix ("nats-" in the all-in-one): <prefix>listen and <prefix>no-fsync.
// DataDir, Name and AuthConf are the process's to set.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.Func(prefix+"listen", `host:port where outside NATS clients (internal services, the nats CLI) reach the embedded server, with credentials from <data-dir>/nats-auth (default: none, in-process only)`, func(v string) error {
		c.Host, c.Port = "", 0
		if v == "" {
			return nil
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("port %q is not a number", port)
		}
		c.Host, c.Port = host, p
		if c.Host == "" {
			c.Host = "0.0.0.0" // ":4222", as net.Listen reads it
		}
		return nil
	})
	fs.BoolVar(&c.NoSync, prefix+"no-fsync", c.NoSync, "answer 202 before the event is synced to disk: faster, but a power loss can lose up to 2 minutes of accepted events")
}

// Validate checks the settings, naming a bad one.
func (c Config) Validate() error {
	if c.Host != "" && (c.Port < -1 || c.Port > 65535) {
		return config.Errorf(c.flagPrefix+"listen", "port %d is not 0-65535", c.Port)
	}
	return nil
}

// Listen is host:port of the client port ("" when in-process only).
func (c Config) Listen() string {
	if c.Host == "" {
		return ""
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// Start starts nats-server with JetStream and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	opts := &server.Options{}
	if cfg.AuthConf != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.AuthConf); err != nil {
			return nil, fmt.Errorf("natsembed: embedded server auth %s: %w", cfg.AuthConf, err)
		}
	}
	opts.ServerName = cfg.Name
	opts.JetStream = true
	opts.StoreDir = filepath.Join(cfg.DataDir, "jetstream")
	opts.NoSigs, opts.NoLog = true, true
	opts.SyncAlways = !cfg.NoSync
	if cfg.Host == "" {
		opts.DontListen = true
	} else {
		opts.Host, opts.Port = cfg.Host, cfg.Port
		if cfg.Port == 0 {
			opts.Port = server.RANDOM_PORT // as net.Listen reads port 0 (nats-server's 0 is 4222)
		}
		if cfg.Port > 0 {
			// Fail at once on a busy port: the server would only time
			// out, without saying why.
			ln, err := net.Listen("tcp", cfg.Listen())
			if err != nil {
				return nil, config.Errorf(cfg.flagPrefix+"listen", "%v", err)
			}
			ln.Close()
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new embedded server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: embedded server not ready after 30s")
	}
	return ns, nil
}

// Component runs the embedded server: *out is set at start, and the
// server is shut down at stop.
func Component(cfg Config, out **server.Server) component.Component {
	return &component.Func{N: "nats",
		StartFn: func(context.Context) (err error) { *out, err = Start(cfg); return err },
		StopFn: func(ctx context.Context) error {
			if *out == nil {
				return nil
			}
			(*out).Shutdown()
			done := make(chan struct{})
			go func() { (*out).WaitForShutdown(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("embedded server still shutting down: %w", ctx.Err())
			}
		},
	}
}

// ConnComponent connects to the embedded server *ns in-process at start,
// as name with the credentials in the file creds ("": none), into *nc;
// onReconnect (may be nil) runs after each reconnect. It drains the
// connection at stop.
func ConnComponent(ns **server.Server, name, creds string, nc **nats.Conn, onReconnect func()) component.Component {
	return natsx.ConnComponent("NATS "+name, func() (*nats.Conn, error) {
		var opts []nats.Option
		if onReconnect != nil {
			opts = append(opts, nats.ReconnectHandler(func(*nats.Conn) { onReconnect() }))
		}
		if creds != "" {
			var err error
			co, err := natsx.Credentials(creds)
			if err != nil {
				return nil, err
			}
			opts = append(opts, co...)
		}
		return Connect(*ns, name, opts...)
	}, nc)
}

// Connect connects to an embedded server without a socket; opts
// add credentials.
func Connect(ns *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect("", append([]nats.Option{nats.InProcessServer(ns), nats.Name(name), nats.MaxReconnects(-1)}, opts...)...)
}
