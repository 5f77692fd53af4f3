// Package testenv starts real dependencies for tests: an embedded
// nats-server with JetStream and a Pebble store, each in a temp dir and
// stopped when the test ends.
package testenv

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/natsembed"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
)

// NATS starts an embedded JetStream server listening on a random loopback port.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{DataDir: t.TempDir(), Host: "127.0.0.1", Port: -1, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Conn connects to ns and returns the connection and a JetStream context.
func Conn(t testing.TB, ns *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return ConnURL(t, ns.ClientURL())
}

// ConnURL connects to the server at url (opts: credentials), closing the
// connection when the test ends.
func ConnURL(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Pebble opens a Pebble store in a temp dir.
func Pebble(t testing.TB) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Closing fails on what was left open (a snapshot, an iterator): a
	// leak is the test's failure.
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Provision creates the streams and the workers' consumer on ns, as the
// provisioning step does; change adjusts the default settings first.
func Provision(t testing.TB, js jetstream.JetStream, change ...func(*provision.Config)) provision.Config {
	t.Helper()
	cfg := provision.DefaultConfig()
	for _, f := range change {
		f(&cfg)
	}
	if err := provision.Apply(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}
