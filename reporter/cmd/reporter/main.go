// Command reporter answers report queries over NATS. Every flag can also be
// set as VT_<FLAG>. It needs the admin tokens the edges take (-admin-tokens
// or -admin-tokens-file): edges forward the caller's admin token, or the
// caller's partner API key, and the reporter checks it for every query.
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
	"github.com/volcanion/tracking/shared/svcstore"
)

func main() {
	var common svc.Common
	natsCfg := natsx.ClientConfig{Name: "reporter"}
	var store backend.Config
	fs := flag.NewFlagSet("reporter", flag.ContinueOnError)
	common.RegisterFlags(fs, "127.0.0.1:9103")
	natsCfg.RegisterFlags(fs)
	store.RegisterFlags(fs)
	redisURL := fs.String("redis-url", "", "Redis URL of the report cache (empty: none)")
	var admin admintoken.Config
	admin.RegisterFlags(fs)
	slack := fs.Duration("complete-slack", reporter.DefaultCompleteSlack, "how far dataCompleteUntil stays behind the oldest unstored event: at least the edges' -publish-timeout plus the clock skew between machines")
	cacheTTL := fs.Duration("report-cache-ttl", 15*time.Second, "how long an answer whose range reaches into the last hour is cached")
	svc.Main("reporter", fs, &common, func() error {
		if *slack < 0 {
			return config.Errorf("complete-slack", "must be 0 or more")
		}
		return errors.Join(natsCfg.Validate(), store.Validate(), svc.CheckRedisURL(*redisURL), admin.Validate())
	},
		func(ctx context.Context, log zerolog.Logger) error {
			cache, err := svc.Redis(ctx, *redisURL, log)
			if err != nil {
				return err
			}
			defer cache.Close()
			d, err := svcstore.Open(store, natsCfg, nil)
			if err != nil {
				return err
			}
			defer d.Close()
			// The reporter checks the credential edges forward, itself.
			tokens, err := admintoken.New(admin)
			if err != nil {
				return err
			}
			go tokens.Watch(ctx, log)
			js, err := jetstream.New(d.NC)
			if err != nil {
				return err
			}
			s, err := reporter.New(d.Store, log).WithCache(cache, *cacheTTL).WithProgress(js, *slack).WithAdminTokens(tokens).Start(d.NC)
			if err != nil {
				return err
			}
			<-ctx.Done()
			return s.Stop()
		})
}
