// Package reporter answers report queries over NATS micro. Counts come from
// the hourly rollups storage keeps exact, so a report is exact at any range;
// series are zero-filled and in UTC.
package reporter

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/keyauth"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/report/calendar"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// Version is reported by the micro service.
const Version = "0.1.0"

// Service is the reporter.
type Service struct {
	store    storage.Store
	log      zerolog.Logger
	cache    Cache
	cacheTTL time.Duration
	progress *progress
	admin    *admintoken.Set
	nc       *nats.Conn        // asks the registry about forwarded keys
	keys     *keyauth.Verifier // set at Start
	now      func() time.Time
	// slots bounds the reports computed at once (nil: no bound). On a
	// local store a report is CPU work: past the cores, more at once only
	// share them, and every answer comes later.
	slots chan struct{}
	// near keeps copies of cached answers in process, checked against
	// gens (near.go); nil: none.
	near *rcache.Local
	gens generations
	// checkEvery: a copy found current is sent without asking again for
	// this long (0: ask on every hit); checks holds when each was.
	checkEvery time.Duration
	checks     nearChecks
	// The records of partners and sub-systems read lately (records.go).
	partners records[tenant.Partner]
	subs     records[tenant.SubSystem]
	// partnerSubs: a partner's sub-systems, by partner id, for naming a
	// top list (nameSubSystems) and nothing else. Fewer than the others: a
	// list may name thousands.
	partnerSubs records[[]tenant.SubSystem] // of at most maxLists partners
}

// WithMaxConcurrent lets at most n reports (or pages of events) be
// computed at once; the rest wait their turn, within their deadline.
// 0 or less: no bound.
func (s *Service) WithMaxConcurrent(n int) *Service {
	s.slots = nil
	if n > 0 {
		s.slots = make(chan struct{}, n)
	}
	return s
}

// turn waits for a slot; release gives it back.
func (s *Service) turn(ctx context.Context) (release func(), err error) {
	if s.slots == nil {
		return func() {}, nil
	}
	// No turn past the caller's deadline: an answer nobody reads. A
	// report started runs to the reporter's own (it is cached for the
	// caller's retry).
	wait := ctx
	if dl, ok := natsx.CallerDeadline(ctx); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-wait.Done():
		mBusy.Inc()
		return nil, apierr.New(apierr.Timeout, "the reporter is busy: no report could start before the deadline; retry shortly")
	}
}

// Cache keeps report answers as the bytes sent: Redis across processes
// (rcache.Cache), or in-process (rcache.Local) on the all-in-one. A hit is
// sent as it is, never decoded and encoded again.
type Cache interface {
	// GetGenerational reads the bytes at key and the generation of id
	// (rcache.KeyOfGeneration) together: one round trip to Redis.
	GetGenerational(ctx context.Context, id, key string) (gen int64, b []byte, ok bool, err error)
	SetBytes(ctx context.Context, key string, b []byte, ttl time.Duration) error
}

var _ Cache = (*rcache.Cache)(nil)
var _ Cache = (*rcache.Local)(nil)

// ClosedTTL is how long an answer whose range ended over an hour ago is
// cached: its buckets are closed, only late events change them.
const ClosedTTL = 10 * time.Minute

// WithCache caches answers: for ttl when the range reaches into the last
// hour (its open bucket still changes), for ClosedTTL when it is older.
// Keys hold every parameter; failed answers are never cached.
func (s *Service) WithCache(c Cache, ttl time.Duration) *Service {
	s.cache, s.cacheTTL = c, ttl
	return s
}

func (s *Service) ttl(to time.Time) time.Duration { return s.ttlAt(to, s.now()) }

// ttlAt is how long an answer for a range ending at to, cached at at, is
// kept.
func (s *Service) ttlAt(to, at time.Time) time.Duration {
	if to.After(at.Add(-time.Hour)) {
		return s.cacheTTL
	}
	return ClosedTTL
}

// cached answers from the cache, or computes, encodes and stores the
// answer: the bytes a caller is sent. An answer from the cache carries
// cachedAt; a fresh one does not. An entry holds the generation of genID
// it was computed at, read with it: workers bump the generation when they
// store into the closed past (rcache.KeyOfGeneration), so an answer for a
// closed range is cached long yet never outlives a late event.
// On a miss, prepare runs first (it may refuse the query at once), then
// compute within a slot. An answer over maxKeep bytes (0: no bound) is
// sent, not kept.
func cached[T any](ctx context.Context, s *Service, genID, key string, to time.Time, maxKeep int, prepare func() error, compute func() (*T, error)) (json.RawMessage, error) {
	// A hit takes no slot: slots bound computing, and a hit holding one
	// while descheduled would stall the reports behind it.
	b, _, ok := s.cacheHit(ctx, genID, key, to, true)
	if ok {
		return b, nil
	}
	if err := prepare(); err != nil {
		return nil, err
	}
	release, err := s.turn(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	// Another request may have computed it while this one waited. The
	// generation is read before computing: a bump while computing leaves
	// the entry stale at once, never a late event uncounted. How long the
	// answer is kept is judged as of then too: an event stored while it is
	// computed, into a range that was open at the reading, is not late to
	// the workers, and bumps nothing.
	read := s.now()
	b, gen, ok := s.cacheHit(ctx, genID, key, to, false)
	if ok {
		return b, nil
	}
	v, err := compute()
	if err != nil {
		return nil, err
	}
	b, err = encodeAnswer(v)
	if err != nil {
		return nil, err
	}
	if gen != nil && (maxKeep == 0 || len(b) <= maxKeep) {
		// Stamped as of the reading too: a near copy elsewhere judges its
		// TTL from cachedAt (keepNear), and must judge it as this one did.
		e, ttl := sealEntry(*gen, withCachedAt(b, read)), s.ttlAt(to, read)
		// A copy only of an entry stored: one without (Redis failing) would
		// never be sent (nearHit), only take memory until it lapsed.
		if err := s.cache.SetBytes(ctx, key, e, ttl); err == nil && s.near != nil {
			_ = s.near.SetBytes(ctx, key, e, ttl)
		}
	}
	return b, nil
}

// cacheHit looks key up; count says whether a miss is counted (a lookup
// repeated after waiting for a slot is not a second miss). On a miss, gen
// is the generation to store an answer under; nil when it is unknown (no
// cache, or the cache failing), and then nothing is stored.
func (s *Service) cacheHit(ctx context.Context, genID, key string, to time.Time, count bool) (answer json.RawMessage, gen *int64, hit bool) {
	if s.cache == nil {
		return nil, nil, false
	}
	if answer, ok := s.nearHit(ctx, genID, key); ok {
		mCache.WithLabelValues("hit").Inc()
		mNear.Inc()
		return answer, nil, true
	}
	g, b, ok, err := s.cache.GetGenerational(ctx, genID, key)
	switch {
	case err != nil:
		s.log.Debug().Err(err).Msg("report cache unavailable")
	case ok:
		at, answer, sound := openEntry(b)
		if sound && at == g {
			mCache.WithLabelValues("hit").Inc()
			s.keepNear(ctx, key, b, answer, to)
			return answer, nil, true
		}
		if !sound {
			// Not an answer (a foreign or damaged value): computed again,
			// and the entry overwritten, rather than sent for the whole TTL.
			s.log.Warn().Str("key", key).Int("bytes", len(b)).Msg("report cache entry is not an answer; computing it again")
		}
		fallthrough
	default:
		gen = &g
	}
	if count {
		mCache.WithLabelValues("miss").Inc()
	}
	return nil, gen, false
}

// A cache entry is a CRC-32C (4 bytes big-endian) of the rest, seeded
// with the format's version (entrySum); the generation the answer was
// computed at (8 bytes big-endian); then the answer. A hit is sent as it
// is, so an entry damaged or not written by this code (an older
// version's, a foreign value under the prefix) must be told apart without
// decoding it. Checking the sum costs microseconds where json.Valid of a
// 720-point answer costs 0.2 ms.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const entryHead = 4 + 8

// entrySum is the sum of an entry's rest, seeded with the format's
// version: an entry of another format fails it, whatever its bytes.
func entrySum(rest []byte) uint32 {
	return crc32.Update(crc32.Checksum([]byte{entryVersion}, castagnoli), castagnoli, rest)
}

const entryVersion = 2

func sealEntry(gen int64, answer []byte) []byte {
	e := make([]byte, entryHead, entryHead+len(answer))
	binary.BigEndian.PutUint64(e[4:], uint64(gen))
	e = append(e, answer...)
	binary.BigEndian.PutUint32(e, entrySum(e[4:]))
	return e
}

// openEntry is the generation and the answer an entry holds; sound is
// false when the entry is not one sealEntry made.
func openEntry(e []byte) (gen int64, answer []byte, sound bool) {
	if len(e) < entryHead+2 || binary.BigEndian.Uint32(e) != entrySum(e[4:]) || e[entryHead] != '{' {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(e[4:])), e[entryHead:], true
}

// encodeAnswer is an answer's JSON as the edge writes JSON ("<" stays "<").
// A report's series is encoded apart and put in place of its null:
// encoding/json checks and compacts a Marshaler's output byte by byte,
// which cost four times the series' own encoding (a tenth of an hourly
// report's CPU). The bytes are those encoding/json writes
// (TestEncodeAnswerAsEncodingJSON).
func encodeAnswer(v any) ([]byte, error) {
	var series report.Series
	switch r := v.(type) {
	case *report.SubSystemReport:
		c := *r
		series, c.TimeSeries, v = r.TimeSeries, nil, &c
	case *report.PartnerReport:
		c := *r
		series, c.TimeSeries, v = r.TimeSeries, nil, &c
	}
	b, err := encodeJSON(v)
	if err != nil || series == nil {
		return b, err
	}
	// Strings are written with every '"' escaped, and a map's values here
	// are numbers: this null is the field's, the one place it can be.
	hole := []byte(`,"timeSeries":null`)
	i := bytes.Index(b, hole)
	if i < 0 || bytes.Count(b, hole) != 1 {
		return nil, fmt.Errorf("reporter: encode answer: no single place for the series")
	}
	sb, err := series.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("reporter: encode answer: %w", err)
	}
	out := make([]byte, 0, len(b)+len(sb))
	out = append(out, b[:i+len(hole)-len("null")]...)
	out = append(out, sb...)
	return append(out, b[i+len(hole):]...), nil
}

func encodeJSON(v any) ([]byte, error) {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("reporter: encode answer: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// withCachedAt is a fresh answer's bytes as the cache keeps them: with
// report.Freshness.CachedAt, the answer's last field, set to t. The same
// bytes as encoding the stamped answer (TestCachedAtSplice), without a
// second encoding.
func withCachedAt(b []byte, t time.Time) []byte {
	out := make([]byte, 0, len(b)+48)
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"cachedAt":"`...)
	out = t.UTC().AppendFormat(out, time.RFC3339Nano)
	return append(out, `"}`...)
}

// decoded is a report's answer decoded, for callers in the process.
func decoded[T any](b json.RawMessage, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("reporter: decode answer: %w", err)
	}
	return v, nil
}

var mBusy = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_reporter_busy_total",
	Help: "Reports refused because no slot (-max-concurrent-reports) freed up before their deadline."})

var mCache = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_reporter_cache_lookups_total",
	Help: "Report cache lookups by result (hit, miss)."}, []string{"result"})

var mNear = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_reporter_near_cache_hits_total",
	Help: "Report cache hits answered from the reporter's near cache (counted in trk_reporter_cache_lookups_total too)."})

// New makes a reporter over a store.
func New(store storage.Store, log zerolog.Logger) *Service {
	return &Service{store: store, log: log.With().Str("svc", "reporter").Logger(), now: time.Now,
		partnerSubs: records[[]tenant.SubSystem]{max: maxLists}}
}

// Start registers the micro service on nc, which also asks the registry
// about the partner keys edges forward.
func (s *Service) Start(nc *nats.Conn) (*natsx.Served, error) {
	if s.admin == nil {
		return nil, errors.New("reporter: no admin tokens: every partner's reports would be open to any NATS client")
	}
	s.nc = nc
	s.keys = keyauth.New(nc, s.store.GetPartner).WithClock(func() time.Time { return s.now() })
	svc, err := micro.AddService(nc, micro.Config{Name: subject.ReporterService, Version: Version,
		Description: "sub-system and partner reports"})
	if err != nil {
		return nil, fmt.Errorf("reporter: add service: %w", err)
	}
	g := svc.AddGroup(subject.ReporterPrefix)
	pool := natsx.NewPool(nc, inFlight)
	add := func(op string, fn natsx.HandlerFunc) error {
		h := natsx.Handler(s.log, "reporter", op, 30*time.Second, fn)
		if op != reportapi.Health {
			h = natsx.SealReplies(natsx.CallerReplyKey, h) // tenant data
		}
		return g.AddEndpoint(op, pool.Wrap(h), micro.WithEndpointSubject(op))
	}
	err = errors.Join(
		add(reportapi.SubSystem, s.guarded(reportapi.SubSystem, func(ctx context.Context, confined confinement, data []byte) (any, error) {
			var q report.SubSystemQuery
			if err := json.Unmarshal(data, &q); err != nil {
				return nil, apierr.New(apierr.InvalidJSON, "bad report query: %v", err)
			}
			if err := confined.subSystem(q.SubSystemID); err != nil {
				return nil, err
			}
			if confined.partner != "" {
				q.PartnerID = confined.partner // a key reads its own partner's sub-systems, whatever the query says
			}
			return s.SubSystemReportJSON(ctx, q)
		})),
		add(reportapi.Partner, s.guarded(reportapi.Partner, func(ctx context.Context, confined confinement, data []byte) (any, error) {
			var q report.PartnerQuery
			if err := json.Unmarshal(data, &q); err != nil {
				return nil, apierr.New(apierr.InvalidJSON, "bad report query: %v", err)
			}
			if confined.partner != "" && q.PartnerID != confined.partner {
				// As for an unknown partner: a key learns nothing of others.
				return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
			}
			if err := confined.subSystem(q.SubSystemID); err != nil {
				return nil, err
			}
			return s.PartnerReportJSON(ctx, q)
		})),
		add(reportapi.Events, s.guarded(reportapi.Events, func(ctx context.Context, confined confinement, data []byte) (any, error) {
			var q report.EventsQuery
			if err := json.Unmarshal(data, &q); err != nil {
				return nil, apierr.New(apierr.InvalidJSON, "bad events query: %v", err)
			}
			if confined.partner != "" && q.PartnerID != confined.partner {
				return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
			}
			if err := confined.subSystem(q.SubSystemID); err != nil {
				return nil, err
			}
			return s.EventsPageJSON(ctx, q)
		})),
		add(reportapi.Health, func(ctx context.Context, _ []byte) (any, error) {
			if err := s.store.Ping(ctx); err != nil {
				return nil, apierr.New(apierr.Unavailable, "storage is not answering")
			}
			return map[string]string{"storage": "ok"}, nil
		}),
	)
	if err != nil {
		svc.Stop()
		pool.Close(context.Background()) // nothing was served
		return nil, fmt.Errorf("reporter: add endpoint: %w", err)
	}
	return natsx.Serving(svc, stopWait, pool), nil
}

// inFlight bounds the requests a reporter holds at once (each waits for a
// turn to compute, slots, within its caller's deadline, or answers from
// the cache at once); past it a request is refused (overloaded: 503 with
// Retry-After at the edge), and another reporter of the group may take
// the retry.
const inFlight = 256

// stopWait bounds a stopping service's wait for the requests in flight
// (each ends within its handler's 30 s).
const stopWait = 35 * time.Second

func checkRange(from, to time.Time, max time.Duration) error {
	switch {
	case from.IsZero() || to.IsZero():
		return apierr.New(apierr.InvalidParameter, "from and to are required")
	// The edge bounds both; a query that reaches this service some other
	// way must not compute a time that cannot be encoded in the answer (a
	// range in year 9999 widened past it hung the answer until timeout).
	case from.Before(instant.Min):
		return param("from", "must be %s", instant.Range)
	case to.After(instant.Max):
		return param("to", "must be %s", instant.Range)
	case !from.Before(to):
		return param("from", "must be before to (%s, or now when to is not given)", to.UTC().Format(time.RFC3339))
	case to.Sub(from) > max:
		msg := fmt.Sprintf("starts more than %d days before to; ask for a shorter range", int(max.Hours()/24))
		return &apierr.Error{Code: apierr.RangeTooLarge, Message: "from " + msg, Fields: []apierr.FieldError{{Field: "from", Message: msg}}}
	}
	return nil
}

// plan is a report's buckets: the range widened to whole buckets of the
// granularity (def when none is asked for) in the zone, each bucket's start.
type plan struct {
	g       calendar.Granularity
	loc     *time.Location
	buckets []time.Time
	from    time.Time // the first bucket's start
	to      time.Time // the last bucket's end
	// reads are what the report reads its figures from (see readView).
	reads storage.Reads
	// The tilings of the buckets and of the range, made once (list).
	seriesTl, wholeTl, countsTl *tiling
	// step is every bucket's length when they are all one length (hours,
	// UTC days; zero when not): index is then a division.
	step time.Duration
	// horizon is how far back the partner's events are kept (zero: all).
	// A row lives until its slot's end plus the retention, so a slot
	// across the horizon still counts events gone from finer rows: the
	// range's figures read the buckets within horizonSkew of it as its
	// series does (tileWhole), so the total is what the series shows.
	horizon time.Time
	// unionsOf is unions, made once (list sets it; copies of the plan
	// share it).
	unionsOf *onceUnions
}

type onceUnions struct {
	once sync.Once
	v    [][]storage.Tile
}

// retain sets the horizon of retention ret (0: all kept) at now, and tiles
// the range again around it.
func (p *plan) retain(ret time.Duration, now time.Time) {
	if ret <= 0 {
		return
	}
	p.horizon = now.Add(-ret)
	if p.buckets != nil {
		p.wholeTl = p.tileWhole()
		p.countsTl = p.tileCounts(p.wholeTl)
	}
}

func param(name, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &apierr.Error{Code: apierr.InvalidParameter, Message: name + " " + msg, Fields: []apierr.FieldError{{Field: name, Message: msg}}}
}

func makePlan(from, to time.Time, granularity, tz string, def calendar.Granularity, maxRange time.Duration) (plan, error) {
	var p plan
	if err := checkRange(from, to, maxRange); err != nil {
		return p, err
	}
	p.g = def
	if granularity != "" {
		g, err := calendar.ParseGranularity(granularity)
		if err != nil {
			return p, param("granularity", "%s", err)
		}
		p.g = g
	}
	p.loc = time.UTC
	if tz != "" {
		loc, err := calendar.ParseZone(tz)
		if err != nil {
			return p, param("tz", "%s", err)
		}
		p.loc = loc
	}
	p.from = calendar.Floor(from, p.g, p.loc)
	p.to = calendar.Next(calendar.Floor(to.Add(-time.Nanosecond), p.g, p.loc), p.g, p.loc)
	if p.from.Before(instant.Min) {
		return p, param("from", "widened to a whole %s in %s must be %s", p.g, p.loc, instant.Range)
	}
	if p.to.After(instant.Max) {
		return p, param("to", "widened to a whole %s in %s must be %s", p.g, p.loc, instant.Range)
	}
	return p, nil
}

// list fills p's buckets, refusing a range of too many. Only a report
// computed needs them: one in the cache was listed when it was computed,
// under the same key, so a hit skips the zone arithmetic of every bucket.
func (p *plan) list() error {
	b, err := calendar.Buckets(p.from, p.to, p.g, p.loc, report.MaxBuckets)
	if errors.Is(err, calendar.ErrTooManyBuckets) {
		return param("granularity", "%s makes more than %d points over this range; ask for a coarser granularity or a shorter range", p.g, report.MaxBuckets)
	} else if err != nil {
		return apierr.New(apierr.InvalidParameter, "%v", err)
	}
	// Counts are kept by the minute: a bucket must start on one. Every zone
	// since 1972 is offset by whole minutes; before, some were not
	// (Africa/Monrovia, -0:44:30), and their buckets would be miscounted.
	for _, t := range append(b, p.to) {
		if t.Unix()%60 != 0 {
			return param("tz", "%s was offset from UTC by minutes and seconds at %s; buckets there cannot be counted exactly: ask in UTC or a later range",
				p.loc, t.UTC().Format(time.RFC3339))
		}
	}
	p.buckets = b
	p.step = evenStep(b, p.to)
	p.seriesTl, p.wholeTl = p.tileSeries(), p.tileWhole()
	p.countsTl = p.tileCounts(p.wholeTl)
	p.unionsOf = &onceUnions{}
	return nil
}

// series is a zero-filled series of p's buckets, each stamped with the
// zone's offset.
func (p plan) series() []report.Point {
	out := make([]report.Point, len(p.buckets))
	for i, b := range p.buckets {
		out[i].Timestamp = b.In(p.loc)
	}
	return out
}

// index is the bucket holding t, or -1.
func (p plan) index(t time.Time) int {
	if t.Before(p.from) || !t.Before(p.to) {
		return -1
	}
	if p.step > 0 {
		return int(t.Sub(p.from) / p.step)
	}
	return sort.Search(len(p.buckets), func(i int) bool { return p.buckets[i].After(t) }) - 1
}

// evenStep is the length of every bucket of starts (the last ending at
// end) when they are all one length, else zero.
func evenStep(starts []time.Time, end time.Time) time.Duration {
	if len(starts) == 0 {
		return 0
	}
	step := end.Sub(starts[len(starts)-1])
	for i := 1; i < len(starts); i++ {
		if starts[i].Sub(starts[i-1]) != step {
			return 0
		}
	}
	return step
}

// SubSystemReport counts one sub-system's events by type, in buckets of
// the query's granularity (default hour) in its zone (default UTC). The
// range is widened to whole buckets.
func (s *Service) SubSystemReport(ctx context.Context, q report.SubSystemQuery) (*report.SubSystemReport, error) {
	return decoded[report.SubSystemReport](s.SubSystemReportJSON(ctx, q))
}

// SubSystemReportJSON is SubSystemReport as the bytes a caller is sent.
func (s *Service) SubSystemReportJSON(ctx context.Context, q report.SubSystemQuery) (json.RawMessage, error) {
	if !tenant.ValidID(q.SubSystemID) {
		return nil, apierr.New(apierr.InvalidParameter, "subSystemId must be a UUID")
	}
	pl, err := makePlan(q.From, q.To, q.Granularity, q.TZ, calendar.Hour, reportapi.MaxRangeDays*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if q.PartnerID != "" {
		// Checked on every request, before the cache: a partner key sees its own sub-systems only.
		ss, err := s.subSystem(ctx, q.SubSystemID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && ss.PartnerID != q.PartnerID) {
			return nil, apierr.New(apierr.SubSystemNotFound, "sub-system not found")
		} else if err != nil {
			return nil, err
		}
	}
	key := fmt.Sprintf("report:v2:sub:%s:%d:%d:%s:%s:%q", q.SubSystemID, pl.from.Unix(), pl.to.Unix(), pl.g, pl.loc, q.EventType)
	return cached(ctx, s, q.SubSystemID, key, pl.to, 0, pl.list, func() (*report.SubSystemReport, error) { return s.subSystemReport(ctx, q, pl) })
}

func (s *Service) subSystemReport(ctx context.Context, q report.SubSystemQuery, pl plan) (*report.SubSystemReport, error) {
	ss, err := s.subSystem(ctx, q.SubSystemID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.New(apierr.SubSystemNotFound, "sub-system not found")
	} else if err != nil {
		return nil, err
	}
	ret, err := s.retention(ctx, ss.PartnerID)
	if err != nil {
		return nil, err
	}
	pl.retain(ret, s.now())
	r := &report.SubSystemReport{SubSystemID: ss.ID, SubSystemCode: ss.Code, SubSystemName: ss.Name, PartnerID: ss.PartnerID,
		From: pl.from.In(pl.loc), To: pl.to.In(pl.loc), EventType: q.EventType, Granularity: string(pl.g), TZ: pl.loc.String()}
	// Read before the counts: every event received before it is in them.
	ctx, r.DataCompleteUntil = s.completeUntil(ctx)
	var release func()
	pl.reads, release = s.readView()
	defer release()
	f, err := s.figures(ctx, pl, storage.SubSystemTypes, ss.ID, q.EventType, storage.SubSystemUsers, nil)
	if err != nil {
		return nil, err
	}
	r.TotalEvents, r.EventsByType, r.UniqueUsers, r.TimeSeries = f.total, f.byGroup, f.users, f.points
	return r, nil
}

// retention is how long a partner's events are kept (a sub-system report
// needs it only for the horizon).
func (s *Service) retention(ctx context.Context, partnerID string) (time.Duration, error) {
	p, err := s.partner(ctx, partnerID)
	if errors.Is(err, storage.ErrNotFound) {
		p = tenant.Partner{ID: partnerID} // the deployment's default
	} else if err != nil {
		return 0, err
	}
	return s.store.Retention(p), nil
}

// readView is what a report reads its figures from: one view of the store
// where it has them (Pebble's snapshot), so the series, the totals and the
// top lists of one answer count the same events while events are written;
// else the store, read live.
func (s *Service) readView() (storage.Reads, func()) {
	if v, ok := s.store.(storage.ReadViewer); ok {
		return v.ReadView()
	}
	return s.store, func() {}
}

// figures are what both reports compute from one rollup key.
type figures struct {
	total   int64
	byGroup map[string]int64 // over the whole range
	users   *int64
	points  []report.Point
}

// also is a count over the whole range of another rollup of a report's
// key, read with its figures' (a partner's by sub-system, beside its by
// type: one statement for both where the store reads them so).
type also struct {
	q  storage.CountsQuery
	fn func(storage.Slot)
}

// figures reads a rollup key's series (one group of it if group is set)
// and its counts by group over the range; with no group, the users of
// scope too; and the range's slots of with, if given, to its fn.
func (s *Service) figures(ctx context.Context, pl plan, rollup storage.Rollup, key, group string, scope storage.UserScope, with *also) (figures, error) {
	f := figures{byGroup: map[string]int64{}}
	acc := make([]pointAcc, len(pl.buckets))
	// One type over buckets that are themselves the range's tiles (UTC
	// days): the series read is the range's, and gives the total too.
	// A type's figures read the range as tiled (not coalesced): past
	// storage.MaxGroups types a slot counts the rest as storage.OtherGroup,
	// so which rows a type is read from decides its count there, and its
	// total must be what its series shows.
	whole := pl.countsTiling()
	if group != "" {
		whole = pl.wholeTiling()
	}
	once := group != "" && pl.seriesTiling().equal(whole)
	err := parallel(ctx, 3, []func(context.Context) error{
		func(ctx context.Context) error {
			if !once && pl.asUnions() {
				// Each point's count as a union of its slots (a day in
				// Asia/Kolkata is ten), where the store keeps them.
				u, err := pl.unionReader(ctx)
				if err == nil {
					return u.UnionCounts(ctx, storage.UnionCountsQuery{Rollup: rollup, Key: key, Group: group, Unions: pl.unions()}, func(i int, n int64) error {
						acc[i].count += n
						return nil
					})
				}
				if !errors.Is(err, errors.ErrUnsupported) {
					return err
				}
			}
			return s.readCounts(ctx, pl.reads, pl.seriesTiling(), storage.CountsQuery{Rollup: rollup, Key: key, Group: group}, func(sl storage.Slot) {
				if i := pl.index(sl.Start); i >= 0 {
					acc[i].count += sl.Total
				}
				if once {
					f.total += sl.Total
					f.byGroup[group] += sl.Total
				}
			})
		},
		func(ctx context.Context) error {
			var qs []storage.CountsQuery
			var fns []func(storage.Slot)
			if !once {
				// The total comes from this read, with the counts by group: the
				// two agree even while events are written on a store without a
				// read view (Cassandra), where the series, a read of its own,
				// may hold a batch more or less.
				qs = append(qs, storage.CountsQuery{Rollup: rollup, Key: key, Groups: group == "", Group: group})
				fns = append(fns, func(sl storage.Slot) {
					f.total += sl.Total
					if group != "" {
						f.byGroup[group] += sl.Total
					}
					for g, n := range sl.Groups {
						f.byGroup[g] += n
					}
				})
			}
			if with != nil {
				qs, fns = append(qs, with.q), append(fns, with.fn)
			}
			if len(qs) == 0 {
				return nil
			}
			return s.readCountsEach(ctx, pl.reads, whole, qs, fns)
		},
		func(ctx context.Context) error {
			sc, k := scope, key
			if group != "" {
				// One type's users: their own sketches, where the store keeps them.
				if sc, k = scope.Typed(), storage.TypedKey(key, group); !storage.KeepsUsers(s.store, sc, pl.from) {
					return nil
				}
			}
			n, err := s.uniqueUsers(ctx, pl, acc, sc, k)
			if group != "" && errors.Is(err, errors.ErrUnsupported) {
				// A store behind a wrapper that does not say: none, as above.
				for i := range acc {
					acc[i].users = nil
				}
				return nil
			}
			f.users = &n
			return err
		},
	})
	if err != nil {
		return f, err
	}
	// Each slot names at most storage.MaxGroups types; a range of slots
	// may name more, and an answer holds the largest.
	storage.CapGroups(f.byGroup)
	f.points = pl.series()
	for i := range f.points {
		f.points[i].Count, f.points[i].UniqueUsers = acc[i].count, acc[i].users
	}
	return f, nil
}

// PartnerReport counts one partner's events by sub-system, in buckets of
// the query's granularity (default day) in its zone (default UTC), with its
// top sub-systems. The range is widened to whole buckets.
func (s *Service) PartnerReport(ctx context.Context, q report.PartnerQuery) (*report.PartnerReport, error) {
	return decoded[report.PartnerReport](s.PartnerReportJSON(ctx, q))
}

// PartnerReportJSON is PartnerReport as the bytes a caller is sent.
func (s *Service) PartnerReportJSON(ctx context.Context, q report.PartnerQuery) (json.RawMessage, error) {
	if !tenant.ValidID(q.PartnerID) {
		return nil, apierr.New(apierr.InvalidParameter, "partnerId must be a UUID")
	}
	if q.SubSystemID != "" && !tenant.ValidID(q.SubSystemID) {
		return nil, param("subSystemId", "must be a sub-system id (a UUID)")
	}
	if q.Top == 0 {
		q.Top = 10
	}
	if q.Top < 1 || q.Top > report.MaxTop {
		return nil, param("top", "must be 1-%d", report.MaxTop)
	}
	pl, err := makePlan(q.From, q.To, q.Granularity, q.TZ, calendar.Day, reportapi.MaxRangeDays*24*time.Hour)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("report:v2:partner:%s:%d:%d:%s:%s:%s:%q:%d", q.PartnerID, pl.from.Unix(), pl.to.Unix(), pl.g, pl.loc, q.SubSystemID, q.EventType, q.Top)
	return cached(ctx, s, q.PartnerID, key, pl.to, 0, pl.list, func() (*report.PartnerReport, error) { return s.partnerReport(ctx, q, pl) })
}

// nameSubSystems fills in the codes and names of a top list: the partner's
// sub-systems in one read, and any other (a publisher on the bus may name
// another partner's sub-system) one by one. Deleted sub-systems keep their
// names here: their events still count.
func (s *Service) nameSubSystems(ctx context.Context, partnerID string, top []report.SubSystemCount) error {
	if len(top) == 0 {
		return nil
	}
	subs, err := s.partnerSubs.get(ctx, partnerID, s.now(), func(ctx context.Context, id string) ([]tenant.SubSystem, error) {
		return s.store.ListSubSystems(ctx, id, true)
	})
	if err != nil {
		return err
	}
	byID := make(map[string]tenant.SubSystem, len(subs))
	for _, ss := range subs {
		byID[ss.ID] = ss
	}
	for i := range top {
		ss, ok := byID[top[i].SubSystemID]
		if !ok {
			if ss, err = s.store.GetSubSystem(ctx, top[i].SubSystemID); errors.Is(err, storage.ErrNotFound) {
				continue // unknown: the id alone
			} else if err != nil {
				return err // not an answer missing a name, cached for minutes
			}
		}
		top[i].SubSystemCode, top[i].SubSystemName = ss.Code, ss.Name
	}
	return nil
}

func (s *Service) partnerReport(ctx context.Context, q report.PartnerQuery, pl plan) (*report.PartnerReport, error) {
	p, err := s.partner(ctx, q.PartnerID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
	} else if err != nil {
		return nil, err
	}
	pl.retain(s.store.Retention(p), s.now())
	r := &report.PartnerReport{PartnerID: p.ID, PartnerName: p.Name, From: pl.from.In(pl.loc), To: pl.to.In(pl.loc),
		SubSystemID: q.SubSystemID, EventType: q.EventType, Granularity: string(pl.g), TZ: pl.loc.String()}
	// Read before the counts: every event received before it is in them.
	ctx, r.DataCompleteUntil = s.completeUntil(ctx)
	var release func()
	pl.reads, release = s.readView()
	defer release()
	bySub := map[string]int64{}
	var f figures
	switch {
	case q.SubSystemID != "":
		// One sub-system: its own rollup, by type.
		ss, err := s.subSystem(ctx, q.SubSystemID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && ss.PartnerID != p.ID) {
			return nil, param("subSystemId", "is not a sub-system of this partner")
		} else if err != nil {
			return nil, err
		}
		f, err = s.figures(ctx, pl, storage.SubSystemTypes, ss.ID, q.EventType, storage.SubSystemUsers, nil)
		if err != nil {
			return nil, err
		}
		if f.total > 0 {
			bySub[ss.ID] = f.total
		}
	case q.EventType != "":
		// One type across sub-systems: the partner's by-type rollup for
		// the series, each sub-system's for the top list.
		f, err = s.figures(ctx, pl, storage.PartnerTypes, p.ID, q.EventType, storage.PartnerUsers, nil)
		if err != nil {
			return nil, err
		}
		subs, err := s.store.ListSubSystems(ctx, p.ID, true)
		if err != nil {
			return nil, err
		}
		var mu sync.Mutex
		fns := make([]func(context.Context) error, len(subs))
		for i, ss := range subs {
			fns[i] = func(ctx context.Context) error {
				return s.readCounts(ctx, pl.reads, pl.wholeTiling(), storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: ss.ID, Group: q.EventType}, func(sl storage.Slot) {
					mu.Lock()
					bySub[ss.ID] += sl.Total
					mu.Unlock()
				})
			}
		}
		if err := parallel(ctx, 4, fns); err != nil {
			return nil, err
		}
	default:
		// Everything: by type from one rollup, by sub-system from the
		// other, read with it.
		var err error
		f, err = s.figures(ctx, pl, storage.PartnerTypes, p.ID, "", storage.PartnerUsers, &also{
			q: storage.CountsQuery{Rollup: storage.PartnerSubSystems, Key: p.ID, Groups: true},
			fn: func(sl storage.Slot) {
				for g, n := range sl.Groups {
					bySub[g] += n
				}
			},
		})
		if err != nil {
			return nil, err
		}
	}
	r.TotalEvents, r.EventsByType, r.UniqueUsers, r.TimeSeries = f.total, f.byGroup, f.users, f.points
	for t, n := range f.byGroup {
		if n > 0 && t != storage.OtherGroup { // not a type: the rest of them
			r.TopEventTypes = append(r.TopEventTypes, report.TypeCount{EventType: t, EventCount: n})
		}
	}
	sort.Slice(r.TopEventTypes, func(i, j int) bool {
		a, b := r.TopEventTypes[i], r.TopEventTypes[j]
		return a.EventCount > b.EventCount || (a.EventCount == b.EventCount && a.EventType < b.EventType)
	})
	if len(r.TopEventTypes) > q.Top {
		r.TopEventTypes = r.TopEventTypes[:q.Top]
	}
	if r.TopEventTypes == nil {
		r.TopEventTypes = []report.TypeCount{}
	}
	top := make([]report.SubSystemCount, 0, len(bySub))
	for id, n := range bySub {
		if n > 0 && id != storage.OtherGroup { // past storage.MaxGroups sub-systems in a slot
			top = append(top, report.SubSystemCount{SubSystemID: id, EventCount: n})
		}
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].EventCount != top[j].EventCount {
			return top[i].EventCount > top[j].EventCount
		}
		return top[i].SubSystemID < top[j].SubSystemID
	})
	if len(top) > q.Top {
		top = top[:q.Top]
	}
	if err := s.nameSubSystems(ctx, p.ID, top); err != nil {
		return nil, err
	}
	r.TopSubSystems = top
	return r, nil
}
