package edge

import (
	"errors"
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/svc"
)

// Binary is the edge process: a NATS client, the optional shared Redis
// cache, and the edge component.
type Binary struct {
	NATS     natsx.ClientConfig
	Edge     Config
	RedisURL string
}

// NewBinary is the edge binary with its defaults.
func NewBinary() *Binary {
	return &Binary{NATS: natsx.ClientConfig{Name: "edge"}, Edge: DefaultConfig()}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.NATS.RegisterFlags(fs)
	b.Edge.RegisterFlags("", fs)
	fs.StringVar(&b.RedisURL, "redis-url", "", "Redis URL of the shared key cache the registry fills, and of the limits and nonces shared across edges (empty: none)")
}

func (b *Binary) Validate() error {
	return errors.Join(b.NATS.Validate(), b.Edge.Validate(),
		admintoken.Config{Tokens: b.Edge.AdminTokens, File: b.Edge.AdminTokensFile}.Validate(), svc.CheckRedisURL(b.RedisURL))
}

func (b *Binary) Components(log zerolog.Logger) []component.Component {
	var nc *nats.Conn
	edge := NewComponent(&b.Edge, &nc, log)
	return []component.Component{
		b.NATS.Component(&nc, edge.Reconnected), // stopped after the edge: flushes what is pending
		svc.RedisComponent(b.RedisURL, log, &b.Edge.Shared),
		edge,
	}
}
