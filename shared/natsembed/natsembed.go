// Package natsembed runs nats-server inside the process: the all-in-one's
// bus and the tests'. Only what embeds a server links nats-server.
package natsembed

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config configures an in-process nats-server with JetStream.
type Config struct {
	// DataDir holds the JetStream file store (under DataDir/jetstream).
	DataDir string
	// Listen is host:port for outside clients; "" accepts in-process connections only.
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

// Connect connects to an embedded server without a socket; opts
// add credentials.
func Connect(ns *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect("", append([]nats.Option{nats.InProcessServer(ns), nats.Name(name), nats.MaxReconnects(-1)}, opts...)...)
}
