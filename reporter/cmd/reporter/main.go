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

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
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
	cfg := reporter.DefaultConfig()
	cfg.RegisterFlags("", fs)
	svc.Main("reporter", fs, &common, func() error {
		return errors.Join(cfg.Validate(), natsCfg.Validate(), store.Validate(), svc.CheckRedisURL(*redisURL), admin.Validate())
	},
		func(ctx context.Context, log zerolog.Logger) error {
			var cache *rcache.Cache
			var d svcstore.Deps
			var tokens *admintoken.Set
			var m micro.Service
			return component.Run(ctx, log, stopTimeout,
				svc.RedisComponent(*redisURL, log, &cache),
				svcstore.Component(store, natsCfg, &d),
				admintoken.Component(admin, log, &tokens), // the reporter checks the credential edges forward, itself
				&component.Func{N: "reporter",
					StartFn: func(context.Context) (err error) {
						m, err = reporter.New(d.Store, log).WithCache(cache, cfg.CacheTTL).WithProgress(d.JS, cfg.CompleteSlack).WithAdminTokens(tokens).Start(d.NC)
						return err
					},
					StopFn: func(context.Context) error { return m.Stop() },
				})
		})
}

// stopTimeout bounds a stop: past it, what is not drained is dropped.
const stopTimeout = 20 * time.Second
