package natsx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/component"
)

// ClientConfig is how a service connects to NATS with its own role's credentials.
type ClientConfig struct {
	URLs     string
	User     string
	Password string
	Creds    string // a .creds file (JWT + nkey seed), instead of user/password
	Name     string
}

// RegisterFlags adds -nats-url, -nats-user, -nats-password, -nats-creds.
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URLs, "nats-url", "nats://127.0.0.1:4222", "comma-separated NATS server URLs")
	fs.StringVar(&c.User, "nats-user", "", "NATS user of this service's role")
	fs.StringVar(&c.Password, "nats-password", "", "NATS password of this service's role")
	fs.StringVar(&c.Creds, "nats-creds", "", "NATS credentials file (instead of user and password)")
}

// Validate checks the settings.
func (c ClientConfig) Validate() error {
	for _, u := range strings.Split(c.URLs, ",") {
		if u = strings.TrimSpace(u); !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return fmt.Errorf("invalid setting -nats-url (VT_NATS_URL): %q is not a nats:// or tls:// URL", u)
		}
	}
	if c.Creds != "" && c.User != "" {
		return errors.New("invalid setting -nats-creds (VT_NATS_CREDS): give a credentials file or a user, not both")
	}
	if c.Creds != "" {
		if _, err := os.Stat(c.Creds); err != nil {
			return fmt.Errorf("invalid setting -nats-creds (VT_NATS_CREDS): %w", err)
		}
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("invalid setting -nats-user/-nats-password (VT_NATS_USER/VT_NATS_PASSWORD): set both or neither")
	}
	return nil
}

// Connect connects, reconnecting forever; onReconnect (may be nil) runs after each reconnect.
func (c ClientConfig) Connect(onReconnect func()) (*nats.Conn, error) {
	opts := []nats.Option{nats.ReconnectWait(250 * time.Millisecond), nats.ReconnectBufSize(16 << 20)}
	if c.Creds != "" {
		co, err := Credentials(c.Creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, co...)
	} else if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if onReconnect != nil {
		opts = append(opts, nats.ReconnectHandler(func(*nats.Conn) { onReconnect() }))
	}
	return Connect(c.URLs, c.Name, opts...)
}

// Component connects at start into *nc (onReconnect as in Connect) and
// drains the connection at stop, so what is pending is flushed.
func (c ClientConfig) Component(nc **nats.Conn, onReconnect func()) component.Component {
	return ConnComponent("NATS", func() (*nats.Conn, error) { return c.Connect(onReconnect) }, nc)
}

// ConnComponent is a connection made by connect at start into *nc, and
// drained within the stop's deadline.
func ConnComponent(name string, connect func() (*nats.Conn, error), nc **nats.Conn) component.Component {
	return &component.Func{N: name,
		StartFn: func(context.Context) (err error) { *nc, err = connect(); return err },
		StopFn:  func(ctx context.Context) error { return Drain(ctx, *nc) },
	}
}

// Drain drains nc and waits, within ctx, until it is closed.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if nc == nil || nc.IsClosed() {
		return nil
	}
	if err := nc.Drain(); err != nil {
		nc.Close()
		return fmt.Errorf("NATS drain: %w", err)
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !nc.IsClosed() {
		select {
		case <-ctx.Done():
			nc.Close()
			return fmt.Errorf("NATS drain: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
