// Package natsx holds what every service does with NATS: connect, set up
// streams, and serve or call micro endpoints with the project's error and
// trace conventions. (An embedded server is package natsembed.)
package natsx

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect connects to NATS servers (comma-separated URLs), reconnecting forever.
func Connect(urls, name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsx: connect %s: %w", urls, err)
	}
	return nc, nil
}
