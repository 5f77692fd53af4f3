package registry

import (
	"context"
	"errors"
	"flag"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
	"github.com/volcanion/tracking/shared/svcstore"
)

// Binary is the registry process: the store and NATS, the optional shared
// key cache, the admin tokens and the registry component. Its one-off
// steps, -migrate and -provision, are the operator's.
type Binary struct {
	NATS      natsx.ClientConfig
	Store     backend.Config
	Registry  Config
	Bus       provision.Config
	Admin     admintoken.Config
	RedisURL  string
	Migrate   bool
	Provision bool
}

// NewBinary is the registry binary with its defaults.
func NewBinary() *Binary {
	return &Binary{NATS: natsx.ClientConfig{Name: "registry"}, Registry: DefaultConfig(), Bus: provision.DefaultConfig()}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.NATS.RegisterFlags(fs)
	b.Store.RegisterFlags(fs)
	b.Registry.RegisterFlags("", fs)
	b.Bus.RegisterFlags("", fs)
	b.Admin.RegisterFlags(fs) // the registry checks the credential edges forward, itself
	fs.StringVar(&b.RedisURL, "redis-url", "", "Redis URL of the shared key cache this service fills for edges (empty: none)")
	fs.BoolVar(&b.Migrate, "migrate", false, "apply the storage schema (idempotent) and exit")
	fs.BoolVar(&b.Provision, "provision", false, "create or update the streams and the workers' consumer from the -stream-* and -consumer-* settings (idempotent) and exit")
}

func (b *Binary) Validate() error {
	switch {
	case b.Migrate && b.Provision:
		return config.Errorf("provision", "run -migrate and -provision as two steps")
	case b.Migrate:
		return b.Store.Validate()
	case b.Provision:
		return errors.Join(b.NATS.Validate(), b.Bus.Validate())
	}
	return errors.Join(b.NATS.Validate(), b.Store.Validate(), b.Registry.Validate(), svc.CheckRedisURL(b.RedisURL), b.Admin.Validate())
}

// Job runs -migrate or -provision, if set.
func (b *Binary) Job(ctx context.Context, log zerolog.Logger) (bool, error) {
	switch {
	case b.Migrate:
		return true, b.Store.Migrate(ctx)
	case b.Provision:
		return true, b.provision(ctx, log)
	}
	return false, nil
}

func (b *Binary) provision(ctx context.Context, log zerolog.Logger) error {
	nc, err := b.NATS.Connect(nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := provision.Apply(ctx, js, b.Bus); err != nil {
		return err
	}
	log.Info().Int("replicas", b.Bus.Replicas).Int64("maxBytes", b.Bus.MaxBytes).Int64("maxMsgs", b.Bus.MaxMsgs).
		Dur("duplicates", b.Bus.Duplicates).Dur("ackWait", b.Bus.AckWait).Int("maxDeliver", b.Bus.MaxDeliver).Msg("streams and consumer provisioned")
	return nil
}

func (b *Binary) Components(log zerolog.Logger) []component.Component {
	var (
		cache  *rcache.Cache
		d      svcstore.Deps
		tokens *admintoken.Set
	)
	return []component.Component{
		svc.RedisComponent(b.RedisURL, log, &cache),
		svcstore.Component(b.Store, b.NATS, &d),
		admintoken.Component(&b.Admin, log, &tokens),
		NewComponent(b.Registry, func() Deps {
			return Deps{NC: d.NC, JS: d.JS, Store: d.Store, Admin: tokens, Cache: cache}
		}, log),
	}
}
