// Command registry serves partners, sub-systems and API keys over NATS.
// Every flag can also be set as VT_<FLAG>. It needs the admin tokens the edges
// take (-admin-tokens or -admin-tokens-file): edges forward the caller's token
// and the registry checks it for every admin operation. Run once with -migrate to apply
// the storage schema, and with -provision to create or update the streams and
// the workers' consumer (with credentials that may manage JetStream).
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/registry"
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

func main() {
	var common svc.Common
	natsCfg := natsx.ClientConfig{Name: "registry"}
	var store backend.Config
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	common.RegisterFlags(fs, "127.0.0.1:9102")
	natsCfg.RegisterFlags(fs)
	store.RegisterFlags(fs)
	bus := provision.DefaultConfig()
	bus.RegisterFlags("", fs)
	var admin admintoken.Config
	admin.RegisterFlags(fs)
	redisURL := fs.String("redis-url", "", "Redis URL of the shared key cache this service fills for edges (empty: none)")
	migrate := fs.Bool("migrate", false, "apply the storage schema (idempotent) and exit")
	provisionBus := fs.Bool("provision", false, "create or update the streams and the workers' consumer from the -stream-* and -consumer-* settings (idempotent) and exit")
	validate := func() error {
		switch {
		case *migrate && *provisionBus:
			return config.Errorf("provision", "run -migrate and -provision as two steps")
		case *migrate:
			return store.Validate()
		case *provisionBus:
			return errors.Join(natsCfg.Validate(), bus.Validate())
		}
		return errors.Join(natsCfg.Validate(), store.Validate(), svc.CheckRedisURL(*redisURL), admin.Validate())
	}
	svc.Main("registry", fs, &common, validate, func(ctx context.Context, log zerolog.Logger) error {
		if *migrate {
			return store.Migrate(ctx)
		}
		if *provisionBus {
			return provisionStreams(ctx, natsCfg, bus, log)
		}
		var cache *rcache.Cache
		var d svcstore.Deps
		var tokens *admintoken.Set
		var m micro.Service
		return component.Run(ctx, log, 20*time.Second,
			svc.RedisComponent(*redisURL, log, &cache),
			svcstore.Component(store, natsCfg, &d),
			admintoken.Component(admin, log, &tokens), // the registry checks the credential edges forward, itself
			&component.Func{N: "registry",
				StartFn: func(ctx context.Context) (err error) {
					m, err = registry.New(d.Store, d.JS, log).WithCache(cache).WithAdminTokens(tokens).Start(ctx, d.NC)
					return err
				},
				StopFn: func(context.Context) error { return m.Stop() },
			})
	})
}

func provisionStreams(ctx context.Context, natsCfg natsx.ClientConfig, bus provision.Config, log zerolog.Logger) error {
	nc, err := natsCfg.Connect(nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := provision.Apply(ctx, js, bus); err != nil {
		return err
	}
	log.Info().Int("replicas", bus.Replicas).Int64("maxBytes", bus.MaxBytes).Int64("maxMsgs", bus.MaxMsgs).
		Dur("duplicates", bus.Duplicates).Dur("ackWait", bus.AckWait).Int("maxDeliver", bus.MaxDeliver).Msg("streams and consumer provisioned")
	return nil
}
