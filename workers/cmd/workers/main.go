// Command workers persists events from JetStream to storage. Run as many
// processes as needed: they share one durable consumer. Every flag can also
// be set as VT_<FLAG>. It needs the admin tokens the edges take
// (-admin-tokens or -admin-tokens-file) for its dead-letter service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
	"github.com/volcanion/tracking/shared/svcstore"
	"github.com/volcanion/tracking/workers"
)

func main() {
	var common svc.Common
	natsCfg := natsx.ClientConfig{Name: "workers"}
	var store backend.Config
	cfg := workers.DefaultConfig()
	fs := flag.NewFlagSet("workers", flag.ContinueOnError)
	common.RegisterFlags(fs, "127.0.0.1:9104")
	natsCfg.RegisterFlags(fs)
	store.RegisterFlags(fs)
	cfg.RegisterFlags("", fs)
	var admin admintoken.Config
	admin.RegisterFlags(fs) // the dead-letter service checks the admin credential edges forward
	loops := fs.Int("loops", 2, "consuming loops in this process")
	redisURL := fs.String("redis-url", "", "Redis of the reporters' cache: late events bump the generation of their partner's cached reports (empty: none; reports of a closed range then lag late events by up to 10 minutes)")
	validate := func() error {
		if *loops < 1 || *loops > 64 {
			return config.Errorf("loops", "must be 1-64")
		}
		return errors.Join(natsCfg.Validate(), store.Validate(), cfg.Validate(), admin.Validate(), svc.CheckRedisURL(*redisURL))
	}
	svc.Main("workers", fs, &common, validate, func(ctx context.Context, log zerolog.Logger) error {
		var cache *rcache.Cache
		var d svcstore.Deps
		var tokens *admintoken.Set
		var dlq micro.Service
		var wg sync.WaitGroup
		var errs []error
		return component.Run(ctx, log, cfg.ShutdownGrace+10*time.Second,
			svc.RedisComponent(*redisURL, log, &cache),
			svcstore.Component(store, natsCfg, &d),
			admintoken.Component(admin, log, &tokens), // the dead-letter service checks the credential edges forward
			&component.Func{N: "workers",
				StartFn: func(ctx context.Context) (err error) {
					w := workers.New(cfg, d.JS, d.Store, workers.NewRegistryDirectory(d.NC, time.Minute), log)
					if cache != nil {
						w.WithGenerations(cache)
					}
					if dlq, err = workers.ServeDeadLetters(d.NC, d.JS, tokens, log); err != nil {
						return err
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := workers.PurgeStored(ctx, d.JS, log); err != nil {
							log.Error().Err(err).Msg("purging stored events stopped")
						}
					}()
					errs = make([]error, *loops)
					for i := range errs {
						wg.Add(1)
						go func() { defer wg.Done(); errs[i] = w.Run(ctx) }()
					}
					return nil
				},
				// The loops end with the process's context; each finishes,
				// writes and acks its batch (within -shutdown-grace) first.
				StopFn: func(ctx context.Context) error {
					done := make(chan struct{})
					go func() { wg.Wait(); close(done) }()
					select {
					case <-done:
					case <-ctx.Done():
						return fmt.Errorf("loops still writing: %w", ctx.Err())
					}
					return errors.Join(append(errs, dlq.Stop())...)
				},
			})
	})
}
