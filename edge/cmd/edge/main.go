// Command edge is the HTTP front door. Every flag can also be set as
// VT_<FLAG>, e.g. VT_ADMIN_TOKENS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/edge/internal/ratelimit"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/signing"
	"github.com/volcanion/tracking/shared/svc"
)

func main() {
	var common svc.Common
	natsCfg := natsx.ClientConfig{Name: "edge"}
	cfg := edge.DefaultConfig()
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	common.RegisterFlags(fs, "127.0.0.1:9101")
	natsCfg.RegisterFlags(fs)
	cfg.RegisterFlags("", fs)
	fs.Func("admin-tokens", "comma-separated admin credentials (16+ characters each)", func(v string) error {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				cfg.AdminTokens = append(cfg.AdminTokens, t)
			}
		}
		return nil
	})
	fs.StringVar(&cfg.AdminTokensFile, "admin-tokens-file", "", "file of admin tokens, one per line, re-read when it changes (rotation without restart)")
	listen := fs.String("http-listen", "127.0.0.1:8080", "address of the HTTP API (it also serves /metrics)")
	edges := fs.Int("rate-limit-edges", 1, "edges sharing the limits: while Redis is down each edge allows limit/edges")
	redisURL := fs.String("redis-url", "", "Redis URL of the shared key cache the registry fills (empty: none)")
	validate := func() error {
		if *edges < 1 {
			return config.Errorf("rate-limit-edges", "must be 1 or more")
		}
		if _, _, err := net.SplitHostPort(*listen); err != nil {
			return config.Errorf("http-listen", "%v", err)
		}
		return errors.Join(natsCfg.Validate(), cfg.Validate(), admintoken.Config{Tokens: cfg.AdminTokens, File: cfg.AdminTokensFile}.Validate(), svc.CheckRedisURL(*redisURL))
	}
	svc.Main("edge", fs, &common, validate, func(ctx context.Context, log zerolog.Logger) error {
		var current atomic.Pointer[edge.Server]
		var nc *nats.Conn
		served := make(chan error, 1)
		return component.Run(ctx, log, 20*time.Second,
			&component.Func{N: "NATS",
				StartFn: func(context.Context) (err error) {
					nc, err = natsCfg.Connect(func() {
						if s := current.Load(); s != nil {
							s.Reconnected() // changes may have been missed while disconnected
						}
					})
					return err
				},
				StopFn: func(context.Context) error { return nc.Drain() }, // after HTTP has stopped: flushes what is pending
			},
			svc.RedisComponent(*redisURL, log, &cfg.Shared),
			&component.Func{N: "edge",
				StartFn: func(ctx context.Context) error {
					if c := cfg.Shared.Client(); c != nil {
						// Shared limits and nonces across edges.
						cfg.Limiter = ratelimit.NewRedis(c, *edges)
						cfg.Nonces = signing.RedisNonces{C: c}
					}
					js, err := jetstream.New(nc)
					if err != nil {
						return err
					}
					srv, err := edge.New(cfg, nc, js, log)
					if err != nil {
						return err
					}
					current.Store(srv)
					if err := srv.Start(ctx); err != nil {
						return err
					}
					ln, err := net.Listen("tcp", *listen)
					if err != nil {
						return config.Errorf("http-listen", "%v", err)
					}
					log.Info().Str("addr", ln.Addr().String()).Msg("listening")
					go func() { served <- srv.Serve(ctx, ln) }() // returns once ctx ends and requests in flight are answered
					return nil
				},
				StopFn: func(ctx context.Context) error {
					select {
					case err := <-served:
						return err
					case <-ctx.Done():
						return fmt.Errorf("requests still in flight: %w", ctx.Err())
					}
				},
			})
	})
}
