// Command registry serves partners, sub-systems and API keys over NATS.
// Every flag can also be set as VT_<FLAG>. Run once with -migrate to apply
// the storage schema.
package main

import (
	"context"
	"errors"
	"flag"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
)

func main() {
	var common svc.Common
	natsCfg := natsx.ClientConfig{Name: "registry"}
	var store backend.Config
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	common.RegisterFlags(fs, "127.0.0.1:9102")
	natsCfg.RegisterFlags(fs)
	store.RegisterFlags(fs)
	replicas := fs.Int("stream-replicas", 1, "replicas of the streams this service creates (3 in a cluster)")
	redisURL := fs.String("redis-url", "", "Redis URL of the shared key cache this service fills for edges (empty: none)")
	migrate := fs.Bool("migrate", false, "apply the storage schema (idempotent) and exit")
	validate := func() error {
		if *replicas < 1 || *replicas > 5 {
			return config.Errorf("stream-replicas", "must be 1-5")
		}
		if *migrate {
			return store.Validate()
		}
		return errors.Join(natsCfg.Validate(), store.Validate(), svc.CheckRedisURL(*redisURL))
	}
	svc.Main("registry", fs, &common, validate, func(ctx context.Context, log zerolog.Logger) error {
		if *migrate {
			return store.Migrate(ctx)
		}
		cache, err := svc.Redis(ctx, *redisURL, log)
		if err != nil {
			return err
		}
		defer cache.Close()
		d, err := svc.Open(store, natsCfg, nil)
		if err != nil {
			return err
		}
		defer d.Close()
		s, err := registry.New(d.Store, d.JS, log, *replicas).WithCache(cache).Start(ctx, d.NC)
		if err != nil {
			return err
		}
		<-ctx.Done()
		return s.Stop()
	})
}
