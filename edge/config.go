package edge

import (
	"flag"
	"net"
	"strings"
	"time"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/config"
	api "github.com/volcanion/tracking/shared/registryapi"
)

// RegisterFlags adds the edge's settings to fs, each name after prefix
// ("" in the edge binary, "edge-" in the all-in-one).
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.StringVar(&c.Listen, prefix+"http-listen", c.Listen, "address of the HTTP API")
	fs.Func(prefix+"admin-tokens", "comma-separated admin credentials (16+ characters each)", func(v string) error {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				c.AdminTokens = append(c.AdminTokens, t)
			}
		}
		return nil
	})
	fs.StringVar(&c.AdminTokensFile, prefix+"admin-tokens-file", c.AdminTokensFile, "file of admin tokens, one per line, re-read when it changes (rotation without restart)")
	fs.IntVar(&c.RateLimitEdges, prefix+"rate-limit-edges", c.RateLimitEdges, "edges sharing the limits: while Redis is down each edge allows limit/edges")
	fs.IntVar(&c.RateLimit, prefix+"rate-limit", c.RateLimit, "default events per second per API key (0: none); partners and keys override it")
	fs.DurationVar(&c.ReplayWindow, prefix+"replay-window", c.ReplayWindow, "accepted X-Timestamp skew of signed requests")
	fs.DurationVar(&c.RegistryStaleAfter, prefix+"registry-stale-after", c.RegistryStaleAfter, "stop trusting cached keys after this long without a word from the registry")
	fs.DurationVar(&c.RegistrySilentGrace, prefix+"registry-silent-grace", c.RegistrySilentGrace, "past -registry-stale-after, keep serving the keys this edge holds for this long while the registry cannot answer (0: fail closed; more keeps ingest up but misses revocations made meanwhile)")
	fs.Func(prefix+"trusted-proxies", "comma-separated IPs/CIDRs allowed to set X-Forwarded-For", func(v string) error {
		p, err := ParseProxies(v)
		c.TrustedProxies = p
		return err
	})
	fs.Int64Var(&c.MaxBodyBytes, prefix+"max-body-bytes", c.MaxBodyBytes, "largest single-event body")
	fs.Int64Var(&c.MaxBulkBytes, prefix+"max-bulk-bytes", c.MaxBulkBytes, "largest bulk body")
	fs.Int64Var(&c.MaxInflightBodyBytes, prefix+"max-inflight-body-bytes", c.MaxInflightBodyBytes, "request body bytes all requests in flight may hold together; past it a request is answered 503 overloaded (at least -max-bulk-bytes)")
	fs.IntVar(&c.MaxBulkEvents, prefix+"max-bulk-events", c.MaxBulkEvents, "most events in one bulk request")
	fs.IntVar(&c.Limits.MaxMetadataBytes, prefix+"max-metadata-bytes", c.Limits.MaxMetadataBytes, "largest metadata object")
	fs.DurationVar(&c.Limits.MaxPast, prefix+"max-event-age", c.Limits.MaxPast, "oldest client timestamp accepted")
	fs.DurationVar(&c.Limits.MaxFuture, prefix+"max-event-future", c.Limits.MaxFuture, "furthest-ahead client timestamp accepted")
	fs.DurationVar(&c.PublishTimeout, prefix+"publish-timeout", c.PublishTimeout, "longest wait for a JetStream acknowledgement")
	fs.DurationVar(&c.ReportTimeout, prefix+"report-timeout", c.ReportTimeout, "longest wait for the reporter; past it a report answers 503 timeout with Retry-After")
	fs.IntVar(&c.GroupCommitMin, prefix+"group-commit-min", c.GroupCommitMin, "fewest concurrent events published together as one atomic batch with one disk sync (0: every event on its own, best when the stream does not sync each write)")
	fs.DurationVar(&c.CacheTTL, prefix+"cache-ttl", c.CacheTTL, "longest time a cached key or partner is trusted")
}

// Validate checks the configuration, naming the bad setting. The admin
// credentials are checked by admintoken (edge.New, and the binaries).
func (c Config) Validate() error {
	bad := func(flag, format string, args ...any) error {
		return config.Errorf(c.flagPrefix+flag, format, args...)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("http-listen", "%v", err)
	}
	// Tokens given here are checked here, naming this component's flags;
	// that some token exists is the process's to check (the all-in-one
	// brings its own).
	for _, t := range c.AdminTokens {
		if len(t) < admintoken.MinLen {
			return bad("admin-tokens", "admin tokens must be at least %d characters", admintoken.MinLen)
		}
	}
	if c.AdminTokensFile != "" {
		if _, err := admintoken.ReadFile(c.AdminTokensFile); err != nil {
			return bad("admin-tokens-file", "%v", err)
		}
	}
	switch {
	case c.RateLimitEdges < 1:
		return bad("rate-limit-edges", "must be 1 or more")
	case c.RateLimit < 0:
		return bad("rate-limit", "must be 0 (none) or more")
	case c.ReplayWindow < time.Second || c.ReplayWindow > time.Hour:
		return bad("replay-window", "must be between 1s and 1h")
	case c.RegistryStaleAfter < 2*api.HeartbeatInterval:
		return bad("registry-stale-after", "must be at least %s (two registry heartbeats)", 2*api.HeartbeatInterval)
	case c.RegistrySilentGrace < 0 || c.RegistrySilentGrace > 24*time.Hour:
		return bad("registry-silent-grace", "must be between 0 (fail closed) and 24h")
	case c.MaxBodyBytes < 1024:
		return bad("max-body-bytes", "must be at least 1024")
	case c.MaxBulkBytes < c.MaxBodyBytes:
		return bad("max-bulk-bytes", "must be at least -%smax-body-bytes (%d)", c.flagPrefix, c.MaxBodyBytes)
	case c.MaxInflightBodyBytes < c.MaxBulkBytes:
		return bad("max-inflight-body-bytes", "must be at least the largest bulk body (-%smax-bulk-bytes, %d)", c.flagPrefix, c.MaxBulkBytes)
	case c.MaxBulkEvents < 1 || c.MaxBulkEvents > 10000:
		return bad("max-bulk-events", "must be 1-10000")
	case int64(c.Limits.MaxMetadataBytes) >= c.MaxBodyBytes:
		return bad("max-metadata-bytes", "must be below -%smax-body-bytes (%d)", c.flagPrefix, c.MaxBodyBytes)
	case c.PublishTimeout <= 0:
		return bad("publish-timeout", "must be positive")
	case c.CacheTTL <= 0:
		return bad("cache-ttl", "must be positive")
	case c.ReportTimeout < 100*time.Millisecond || c.ReportTimeout > 5*time.Minute:
		return bad("report-timeout", "must be between 100ms and 5m")
	case c.GroupCommitMin < 0 || c.GroupCommitMin == 1 || c.GroupCommitMin > 500:
		return bad("group-commit-min", "must be 0 (off) or 2-500")
	}
	return nil
}
