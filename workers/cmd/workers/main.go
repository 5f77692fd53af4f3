// Command workers persists events from JetStream to storage. Run as many
// processes as needed: they share one durable consumer. Every flag can also
// be set as VT_<FLAG>. It needs the admin tokens the edges take
// (-admin-tokens or -admin-tokens-file) for its dead-letter service.
package main

import (
	"context"
	"errors"
	"flag"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
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
		d, err := svcstore.Open(store, natsCfg, nil)
		if err != nil {
			return err
		}
		defer d.Close()
		cache, err := svc.Redis(ctx, *redisURL, log)
		if err != nil {
			return err
		}
		defer cache.Close()
		w := workers.New(cfg, d.JS, d.Store, workers.NewRegistryDirectory(d.NC, time.Minute), log)
		if cache != nil {
			w.WithGenerations(cache)
		}
		tokens, err := admintoken.New(admin)
		if err != nil {
			return err
		}
		go tokens.Watch(ctx, log)
		dlq, err := workers.ServeDeadLetters(d.NC, d.JS, tokens, log)
		if err != nil {
			return err
		}
		defer dlq.Stop()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := workers.PurgeStored(ctx, d.JS, log); err != nil {
				log.Error().Err(err).Msg("purging stored events stopped")
			}
		}()
		errs := make([]error, *loops)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = w.Run(ctx) }()
		}
		wg.Wait() // each loop finishes, writes and acks its batch after ctx ends
		return errors.Join(errs...)
	})
}
