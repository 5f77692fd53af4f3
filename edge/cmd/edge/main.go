// Command edge is the HTTP front door. Every flag can also be set as
// VT_<FLAG>, e.g. VT_ADMIN_TOKENS.
package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/edge/internal/ratelimit"
	"github.com/volcanion/tracking/shared/admintoken"
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
	listen := fs.String("http-listen", "127.0.0.1:8080", "address of the HTTP API (it also serves /metrics)")
	tokens := fs.String("admin-tokens", "", "comma-separated admin credentials (16+ characters each)")
	fs.StringVar(&cfg.AdminTokensFile, "admin-tokens-file", "", "file of admin tokens, one per line, re-read when it changes (rotation without restart)")
	fs.IntVar(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "default events per second per API key (0: none); partners and keys override it")
	edges := fs.Int("rate-limit-edges", 1, "edges sharing the limits: while Redis is down each edge allows limit/edges")
	fs.DurationVar(&cfg.ReplayWindow, "replay-window", cfg.ReplayWindow, "accepted X-Timestamp skew of signed requests")
	fs.DurationVar(&cfg.RegistryStaleAfter, "registry-stale-after", cfg.RegistryStaleAfter, "stop trusting cached keys after this long without a word from the registry")
	fs.DurationVar(&cfg.RegistrySilentGrace, "registry-silent-grace", cfg.RegistrySilentGrace, "past -registry-stale-after, keep serving the keys this edge holds for this long while the registry cannot answer (0: fail closed; more keeps ingest up but misses revocations made meanwhile)")
	redisURL := fs.String("redis-url", "", "Redis URL of the shared key cache the registry fills (empty: none)")
	proxies := fs.String("trusted-proxies", "", "comma-separated IPs/CIDRs allowed to set X-Forwarded-For")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest single-event body")
	fs.Int64Var(&cfg.MaxBulkBytes, "max-bulk-bytes", cfg.MaxBulkBytes, "largest bulk body")
	fs.Int64Var(&cfg.MaxInflightBodyBytes, "max-inflight-body-bytes", cfg.MaxInflightBodyBytes, "request body bytes all requests in flight may hold together; past it a request is answered 503 overloaded (at least -max-bulk-bytes)")
	fs.IntVar(&cfg.MaxBulkEvents, "max-bulk-events", cfg.MaxBulkEvents, "most events in one bulk request")
	fs.IntVar(&cfg.Limits.MaxMetadataBytes, "max-metadata-bytes", cfg.Limits.MaxMetadataBytes, "largest metadata object")
	fs.DurationVar(&cfg.Limits.MaxPast, "max-event-age", cfg.Limits.MaxPast, "oldest client timestamp accepted")
	fs.DurationVar(&cfg.Limits.MaxFuture, "max-event-future", cfg.Limits.MaxFuture, "furthest-ahead client timestamp accepted")
	fs.DurationVar(&cfg.PublishTimeout, "publish-timeout", cfg.PublishTimeout, "longest wait for a JetStream acknowledgement")
	fs.DurationVar(&cfg.ReportTimeout, "report-timeout", cfg.ReportTimeout, "longest wait for the reporter; past it a report answers 503 timeout with Retry-After")
	fs.IntVar(&cfg.GroupCommitMin, "group-commit-min", cfg.GroupCommitMin, "fewest concurrent events published together as one atomic batch with one disk sync (0: every event on its own, best when the stream does not sync each write)")
	fs.DurationVar(&cfg.CacheTTL, "cache-ttl", cfg.CacheTTL, "longest time a cached key or partner is trusted")
	validate := func() error {
		for _, t := range strings.Split(*tokens, ",") {
			if t = strings.TrimSpace(t); t != "" {
				cfg.AdminTokens = append(cfg.AdminTokens, t)
			}
		}
		if len(cfg.AdminTokens) == 0 && cfg.AdminTokensFile == "" {
			return config.Errorf("admin-tokens", "at least one admin token is required (or -admin-tokens-file)")
		}
		if cfg.AdminTokensFile != "" {
			if _, err := admintoken.ReadFile(cfg.AdminTokensFile); err != nil {
				return config.Errorf("admin-tokens-file", "%v", err)
			}
		}
		if *edges < 1 {
			return config.Errorf("rate-limit-edges", "must be 1 or more")
		}
		var err error
		if cfg.TrustedProxies, err = edge.ParseProxies(*proxies); err != nil {
			return config.Errorf("trusted-proxies", "%v", err)
		}
		if _, _, err := net.SplitHostPort(*listen); err != nil {
			return config.Errorf("http-listen", "%v", err)
		}
		return errors.Join(natsCfg.Validate(), cfg.Validate(), svc.CheckRedisURL(*redisURL))
	}
	svc.Main("edge", fs, &common, validate, func(ctx context.Context, log zerolog.Logger) error {
		var current atomic.Pointer[edge.Server]
		nc, err := natsCfg.Connect(func() {
			if s := current.Load(); s != nil {
				s.Reconnected() // changes may have been missed while disconnected
			}
		})
		if err != nil {
			return err
		}
		defer nc.Drain() // after HTTP has stopped: flushes what is still pending
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		if cfg.Shared, err = svc.Redis(ctx, *redisURL, log); err != nil {
			return err
		}
		defer cfg.Shared.Close()
		if c := cfg.Shared.Client(); c != nil {
			// Shared limits and nonces across edges.
			cfg.Limiter = ratelimit.NewRedis(c, *edges)
			cfg.Nonces = signing.RedisNonces{C: c}
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
		return srv.Serve(ctx, ln)
	})
}
