package reporter

import (
	"context"
	"flag"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
)

// The EVENTS stream is a buffer: workers purge it up to the oldest event
// not yet stored, every second. So its first message is the oldest event
// that may be missing from storage, and every event the bus received
// before it is stored and counted. An empty stream means everything
// received so far is.

// DefaultCompleteSlack covers an edge that stamped an event received, then
// published it later (group commit, a slow bus: up to its
// -publish-timeout, 5 s), and clocks of edges and the bus that differ a
// little: such an event can reach the stream after an instant the stream
// was seen empty.
const DefaultCompleteSlack = 10 * time.Second

// progressEvery bounds the stream info requests: one a second at most.
const progressEvery = time.Second

type progress struct {
	js    jetstream.JetStream
	slack time.Duration
	mu    sync.Mutex
	at    time.Time // when last read
	wall  time.Time // the same by the wall clock, taken once the stream answered
	last  *time.Time
}

// WithProgress lets answers say up to when their data is complete
// (dataCompleteUntil), from the EVENTS stream on js, less slack (at least
// the edges' -publish-timeout plus the clock skew between machines).
func (s *Service) WithProgress(js jetstream.JetStream, slack time.Duration) *Service {
	s.progress = &progress{js: js, slack: slack}
	return s
}

// completeUntil is the instant before which every received event is
// counted, or nil when the stream cannot be read. Read it before the
// counts it qualifies, with the ctx it returns: that asks the store for
// every write before the stream was read (storage.WithReadAfter), which a
// read the store made a moment earlier, and the reading cached here, may
// not hold.
func (s *Service) completeUntil(ctx context.Context) (context.Context, *time.Time) {
	t, at := s.progressReading(ctx)
	if t == nil {
		return ctx, nil
	}
	return storage.WithReadAfter(ctx, at), t
}

// progressReading is completeUntil's instant and when the stream was read.
func (s *Service) progressReading(ctx context.Context) (*time.Time, time.Time) {
	p := s.progress
	if p == nil {
		return nil, time.Time{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := s.now()
	if p.last != nil && now.Sub(p.at) < progressEvery {
		return p.last, p.wall
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := p.js.Stream(ctx, subject.EventsStream)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot read the event stream's progress; answers go without dataCompleteUntil")
		p.last = nil
		return nil, time.Time{}
	}
	wall := time.Now() // after the stream answered; the store's clock, not s.now (tests move that)
	state := st.CachedInfo().State
	t := now
	if state.Msgs > 0 && state.FirstTime.Before(t) {
		t = state.FirstTime
	}
	t = t.Add(-p.slack).UTC()
	p.at, p.last, p.wall = now, &t, wall
	return p.last, p.wall
}

// Config is the reporter's own settings.
type Config struct {
	// CompleteSlack is how far dataCompleteUntil stays behind the oldest
	// unstored event.
	CompleteSlack time.Duration
	// CacheTTL is how long an answer whose range reaches into the last hour
	// is cached (0: no cache).
	CacheTTL time.Duration
	// MaxConcurrent bounds the reports computed at once (0: no bound).
	// On a local store (the all-in-one's Pebble) a report is CPU work, and
	// the cores are the right bound; on Cassandra a report mostly waits.
	MaxConcurrent int
	// NearCacheBytes bounds the copies of cached answers kept in process
	// (near.go), where the cache is Redis (0: none).
	NearCacheBytes int
	// NearCheckEvery is how long a copy found current in Redis is sent
	// without asking again (0: ask on every hit).
	NearCheckEvery time.Duration

	flagPrefix string
}

// DefaultNearCheckEvery is the default Config.NearCheckEvery: far below
// what a person refreshing a report notices, and a hot report's copy asks
// Redis four times a second.
const DefaultNearCheckEvery = 250 * time.Millisecond

// maxNearCheckEvery bounds Config.NearCheckEvery: past it a late event
// would wait long on a busy report.
const maxNearCheckEvery = 10 * time.Second

// DefaultConfig is the reporter binary's default.
func DefaultConfig() Config {
	return Config{CompleteSlack: DefaultCompleteSlack, CacheTTL: 15 * time.Second, NearCacheBytes: 64 << 20, NearCheckEvery: DefaultNearCheckEvery}
}

// RegisterFlags adds the reporter's settings to fs, each name after prefix
// ("" in the reporter binary, "reporter-" in the all-in-one).
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.DurationVar(&c.CompleteSlack, prefix+"complete-slack", c.CompleteSlack, "how far dataCompleteUntil stays behind the oldest unstored event: at least the edges' -publish-timeout plus the clock skew between machines")
	fs.DurationVar(&c.CacheTTL, prefix+"report-cache-ttl", c.CacheTTL, "how long an answer whose range reaches into the last hour is cached (older ranges: 10m; 0: no cache)")
	fs.IntVar(&c.NearCacheBytes, prefix+"near-cache-bytes", c.NearCacheBytes, "bytes of cached answers also kept in process where the cache is Redis, each checked against Redis's generation (a few bytes) before it is sent (0: none)")
	fs.DurationVar(&c.NearCheckEvery, prefix+"near-check-every", c.NearCheckEvery, "how long a copy in process found current in Redis is sent without asking Redis again: a late event's bump reaches it at most this late (0: ask on every hit; at most "+maxNearCheckEvery.String()+")")
	fs.IntVar(&c.MaxConcurrent, prefix+"max-concurrent-reports", c.MaxConcurrent, "reports computed at once, the rest wait their turn within their deadline (0: no bound; on a local store, the number of cores keeps every answer fastest)")
}

// Validate checks the settings, naming the bad one.
func (c Config) Validate() error {
	switch {
	case c.CompleteSlack < 0:
		return config.Errorf(c.flagPrefix+"complete-slack", "must be 0 or more")
	case c.CacheTTL < 0:
		return config.Errorf(c.flagPrefix+"report-cache-ttl", "must be 0 (no cache) or more")
	case c.NearCacheBytes < 0:
		return config.Errorf(c.flagPrefix+"near-cache-bytes", "must be 0 (none) or more")
	case c.NearCheckEvery < 0 || c.NearCheckEvery > maxNearCheckEvery:
		return config.Errorf(c.flagPrefix+"near-check-every", "must be 0 (ask Redis on every hit) to %v", maxNearCheckEvery)
	case c.MaxConcurrent < 0 || c.MaxConcurrent > 1024:
		return config.Errorf(c.flagPrefix+"max-concurrent-reports", "must be 0 (no bound) to 1024")
	}
	return nil
}
