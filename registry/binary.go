package registry

import (
	"context"
	"errors"
	"flag"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/svcstore"
)

// Binary is the registry process: the store and NATS, the optional shared
// key cache, the admin tokens and the registry component. Its one-off
// steps, -migrate and -provision, are the operator's.
type Binary struct {
	svcstore.Service
	Registry  Config
	Bus       provision.Config
	Migrate   bool
	Provision bool
}

// NewBinary is the registry binary with its defaults.
func NewBinary() *Binary {
	return &Binary{Service: svcstore.NewService("registry", "Redis URL of the shared key cache this service fills for edges (empty: none)"),
		Registry: DefaultConfig(), Bus: provision.DefaultConfig()}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.Service.RegisterFlags(fs)
	b.Registry.RegisterFlags("", fs)
	b.Bus.RegisterFlags("", fs)
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
	return errors.Join(b.Service.Validate(), b.Registry.Validate())
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
	var r svcstore.Running
	return append(b.Service.Components(log, &r), NewComponent(b.Registry, func() Deps {
		return Deps{NC: r.NC, JS: r.JS, Store: r.Store, Admin: r.Admin, Cache: r.Cache}
	}, log))
}
