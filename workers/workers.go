// Package workers persists events from the EVENTS stream. Every worker
// process pulls from one durable consumer, so adding processes adds
// throughput. An event is acknowledged (and so leaves the stream) only after
// storage accepted it or it was dead-lettered; a failed write is retried with
// backoff while a heartbeat keeps the batch in progress.
package workers

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
)

var (
	mWritten = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_events_written_total",
		Help: "Events newly written to storage."})
	mDuplicates = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_events_duplicate_total",
		Help: "Events skipped because they were already stored (redeliveries, client retries)."})
	mDead = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_worker_events_dead_lettered_total",
		Help: "Events moved to the dead-letter stream, by reason."}, []string{"reason"})
	mExpired = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_events_expired_total",
		Help: "Events not stored because their timestamp is already past the partner's retention."})
	mUnpurged = promauto.NewGauge(prometheus.GaugeOpts{Name: "trk_stream_stored_unpurged_messages",
		Help: "Events in EVENTS already stored or dead-lettered and not purged yet (grows while one held event keeps the ack floor down)."})
	mPurgeErrors = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_stream_purge_errors_total",
		Help: "Failed purges of stored events (a denied purge, for one: stale NATS credentials)."})
	mPurged = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_stream_purges_total",
		Help: "Purges of stored events from EVENTS (each removes everything below the ack floor)."})
	mConflicts = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_events_id_conflict_total",
		Help: "Events not stored because their id was already taken by an event with different content (dead-lettered)."})
	mWriteErrors = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_write_errors_total",
		Help: "Failed batch writes (each is retried)."})
	mWriteSeconds = promauto.NewHistogram(prometheus.HistogramOpts{Name: "trk_worker_batch_write_duration_seconds",
		Help: "Time to write one batch to storage.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	mPending = promauto.NewGauge(prometheus.GaugeOpts{Name: "trk_consumer_pending_messages",
		Help: "Events in the stream not yet delivered to a worker, plus those delivered and not yet acknowledged."})
)

// Config tunes a worker process. How long a worker may hold an event and
// how often it is redelivered belong to the consumer (package provision):
// the worker reads them from it and never changes them.
type Config struct {
	BatchSize int           // messages per fetch and per storage write
	MaxWait   time.Duration // longest wait for a batch to fill
	// ShutdownGrace bounds how long a stopping worker keeps retrying the
	// batch in hand; what it cannot write is left unacknowledged and redelivered.
	ShutdownGrace time.Duration
	// Loops is how many consuming loops the component runs.
	Loops int

	flagPrefix string // what RegisterFlags put before each flag name
}

// DefaultConfig is a sensible single-node configuration.
func DefaultConfig() Config {
	return Config{BatchSize: 2000, MaxWait: 250 * time.Millisecond, ShutdownGrace: 10 * time.Second, Loops: 2}
}

// RegisterFlags adds the workers' settings to fs, each name after prefix
// ("" in the workers binary, "workers-" in the all-in-one).
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.IntVar(&c.BatchSize, prefix+"batch-size", c.BatchSize, "events per fetch and per storage write")
	fs.DurationVar(&c.MaxWait, prefix+"max-wait", c.MaxWait, "longest wait for a batch to fill")
	fs.DurationVar(&c.ShutdownGrace, prefix+"shutdown-grace", c.ShutdownGrace, "how long a stopping worker keeps retrying the batch in hand")
	fs.IntVar(&c.Loops, prefix+"loops", c.Loops, "consuming loops in this process")
}

// Validate checks the configuration, naming the bad setting.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return config.Errorf(c.flagPrefix+"batch-size", "must be 1-10000")
	case c.MaxWait <= 0:
		return config.Errorf(c.flagPrefix+"max-wait", "must be positive")
	case c.ShutdownGrace < 0:
		return config.Errorf(c.flagPrefix+"shutdown-grace", "must be 0 or more")
	case c.Loops < 1 || c.Loops > 64:
		return config.Errorf(c.flagPrefix+"loops", "must be 1-64")
	}
	return nil
}

// Worker is one consuming loop.
type Worker struct {
	cfg   Config
	js    jetstream.JetStream
	store storage.Events
	dir   Directory
	log   zerolog.Logger
	gens  Generations
}

// Generations are the report cache's counters of late writes (rcache).
type Generations interface {
	Bump(ctx context.Context, ids ...string) error
}

// lateAfter: an event older than this falls in a range reports cache long
// (reporter.ClosedTTL), so storing it bumps its partner's and sub-system's
// generation.
const lateAfter = time.Hour

// WithGenerations bumps the report cache's generation of every partner and
// sub-system a batch stores late events for: cached reports of their
// closed past are then computed again.
func (w *Worker) WithGenerations(g Generations) *Worker { w.gens = g; return w }

// bumpLate tells the report cache about late events just stored.
func (w *Worker) bumpLate(ctx context.Context, events []event.Event) {
	if w.gens == nil {
		return
	}
	cut := time.Now().Add(-lateAfter)
	seen := map[string]bool{}
	var ids []string
	for i := range events {
		e := &events[i]
		if !e.Timestamp.Before(cut) {
			continue
		}
		for _, id := range []string{e.PartnerID, e.SubSystemID} {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if err := w.gens.Bump(ctx, ids...); err != nil {
		w.log.Warn().Err(err).Msg("cannot tell the report cache about late events; cached reports of their range may lag by up to 10 minutes")
	}
}

// New makes a worker. dir checks that an event's partner and sub-system
// exist; nil skips the check.
func New(cfg Config, js jetstream.JetStream, store storage.Events, dir Directory, log zerolog.Logger) *Worker {
	return &Worker{cfg: cfg, js: js, store: store, dir: dir, log: log.With().Str("svc", "workers").Logger()}
}

// Consumer checks that the streams and the shared durable consumer were
// provisioned as this version needs, and returns the consumer.
func (w *Worker) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	if err := provision.Verify(ctx, w.js, provision.NeedEvents|provision.NeedConsumer); err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	c, err := w.js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
	if err != nil {
		return nil, fmt.Errorf("workers: consumer: %w", err)
	}
	return c, nil
}

// Run consumes until ctx ends, then finishes the batch in hand.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.Consumer(ctx)
	if err != nil {
		return err
	}
	ci := cons.CachedInfo()
	maxDeliver, err := provision.MaxDeliver(ci)
	if err != nil {
		return fmt.Errorf("workers: %w", err)
	}
	go w.reportPending(ctx, cons)
	backoff := newBackoff()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(w.cfg.BatchSize, jetstream.FetchMaxWait(w.cfg.MaxWait))
		if err != nil {
			w.log.Warn().Err(err).Msg("fetch failed")
			sleep(ctx, backoff.next())
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 {
			w.log.Warn().Err(err).Msg("fetch ended with an error")
			sleep(ctx, backoff.next())
			continue
		}
		backoff.reset()
		if len(msgs) > 0 {
			w.handle(ctx, msgs, ci.Config.AckWait, maxDeliver)
		}
	}
	return nil
}

// item is one fetched message and the event in it.
type item struct {
	m jetstream.Msg
	e event.Event
}

// handle stores one batch and acknowledges each event once it is stored or
// dead-lettered. A heartbeat keeps the whole batch ours for as long as it
// takes: directory lookups, a slow first write, retries while storage is
// down.
func (w *Worker) handle(ctx context.Context, msgs []jetstream.Msg, ackWait time.Duration, maxDeliver int) {
	// Once fetched, a batch is finished even if shutdown begins: keep trying
	// for ShutdownGrace past cancellation, then leave it for redelivery.
	wctx, cancel := graceContext(ctx, w.cfg.ShutdownGrace)
	defer cancel()
	stopBeat := heartbeat(msgs, ackWait)
	defer stopBeat()
	wctx, traced, endSpans := traceBatch(wctx, msgs)
	defer endSpans()

	items := make([]item, 0, len(msgs))
	for _, m := range msgs {
		// Checked before anything else, so an event that kills its worker
		// (or can never be stored) stops coming back.
		if md, err := m.Metadata(); err == nil && int(md.NumDelivered) > maxDeliver {
			w.deadLetter(wctx, m, fmt.Sprintf("not stored after %d deliveries: the workers holding it stopped or failed each time", maxDeliver))
			continue
		}
		e, reason := decode(m)
		if reason != "" {
			w.deadLetter(wctx, m, reason)
			continue
		}
		items = append(items, item{m, e})
	}
	items = w.checkDirectory(wctx, items)
	pending := [][]item{items}
	backoff := newBackoff()
	for len(pending) > 0 {
		part := pending[0]
		if len(part) == 0 {
			pending = pending[1:]
			continue
		}
		events := make([]event.Event, len(part))
		for i, it := range part {
			events[i] = it.e
		}
		start := time.Now()
		endWrite := traced.write(part)
		res, err := w.store.WriteEvents(wctx, events)
		endWrite(err)
		switch {
		case err == nil:
			mWriteSeconds.Observe(time.Since(start).Seconds())
			mWritten.Add(float64(res.Written))
			mDuplicates.Add(float64(len(events) - res.Written - len(res.Conflicts) - len(res.Expired)))
			mExpired.Add(float64(len(res.Expired)))
			if len(res.Expired) > 0 {
				w.log.Warn().Int("events", len(res.Expired)).Msg("events past their partner's retention were not stored")
			}
			conflict := make(map[int]bool, len(res.Conflicts))
			for _, i := range res.Conflicts {
				if part[i].m.Headers().Get(subject.HeaderFirstWins) != "" {
					mDuplicates.Inc() // a Segment message sent again, changed by its library: the first stored wins
					continue
				}
				conflict[i] = true
				mConflicts.Inc()
				w.deadLetter(wctx, part[i].m, "id already taken: an event with this id and different content was stored first")
			}
			w.bumpLate(wctx, events) // before the acks: a report that sees them stored sees the bump
			for i, it := range part {
				if !conflict[i] {
					ack(it.m, w.log)
				}
			}
			w.tell(events, conflict, res.Expired)
			pending = pending[1:]
			backoff.reset()
		case errors.Is(err, storage.ErrRefused):
			// Something in this part can never be stored: split it until
			// the refused event stands alone, storing the rest.
			if len(part) == 1 {
				w.deadLetter(wctx, part[0].m, "refused by storage: "+err.Error())
				pending = pending[1:]
				continue
			}
			h := len(part) / 2
			pending = append([][]item{part[:h], part[h:]}, pending[1:]...)
		default:
			mWriteErrors.Inc()
			if wctx.Err() != nil {
				n := 0
				for _, p := range pending {
					n += len(p)
				}
				w.log.Warn().Err(err).Int("events", n).Msg("shutdown before the batch was stored; it will be redelivered")
				return
			}
			w.log.Error().Err(err).Int("events", len(part)).Msg("batch write failed; retrying")
			sleep(wctx, backoff.next())
		}
	}
}

// tell publishes what a part stored to the live tail, per partner: at
// most event.TailMax events each, the rest counted. Core NATS, fire and
// forget: with no edge listening, the server drops it at once.
func (w *Worker) tell(events []event.Event, conflict map[int]bool, expired []int) {
	nc := w.js.Conn()
	if nc == nil {
		return
	}
	skip := make(map[int]bool, len(expired))
	for _, i := range expired {
		skip[i] = true
	}
	now := time.Now().UTC()
	batches := map[string]*event.TailBatch{}
	for i := range events {
		if conflict[i] || skip[i] {
			continue
		}
		e := &events[i]
		b := batches[e.PartnerID]
		if b == nil {
			b = &event.TailBatch{StoredAt: now}
			batches[e.PartnerID] = b
		}
		if len(b.Events) == event.TailMax {
			b.Omitted++
			continue
		}
		b.Events = append(b.Events, event.TailEvent{ID: e.ID, SubSystemID: e.SubSystemID, EventType: e.EventType,
			Timestamp: e.Timestamp, UserID: e.UserID, AnonymousID: e.AnonymousID})
	}
	for partner, b := range batches {
		data, err := json.Marshal(b)
		if err == nil {
			err = nc.Publish(subject.Tail(partner), data)
		}
		if err != nil {
			w.log.Debug().Err(err).Msg("live tail not told") // only the tail misses it
		}
	}
}

// checkDirectory drops (dead-letters) events of unknown partners or
// sub-systems, looking each partner up once per batch. While the registry
// does not answer it keeps trying: the heartbeat holds the batch.
func (w *Worker) checkDirectory(ctx context.Context, items []item) []item {
	if w.dir == nil {
		return items
	}
	type verdict struct {
		reason    string
		retention time.Duration
	}
	known := map[[2]string]verdict{}
	kept := items[:0]
	backoff := newBackoff()
	for _, it := range items {
		k := [2]string{it.e.PartnerID, it.e.SubSystemID}
		v, ok := known[k]
		for !ok {
			reason, retention, err := w.dir.Check(ctx, k[0], k[1])
			if err == nil {
				v, ok = verdict{reason, retention}, true
				known[k] = v
				break
			}
			if ctx.Err() != nil {
				return kept // the rest stays unacknowledged and is redelivered
			}
			w.log.Warn().Err(err).Msg("cannot check the event's partner; retrying")
			sleep(ctx, backoff.next())
		}
		if v.reason != "" {
			w.deadLetter(ctx, it.m, v.reason)
			continue
		}
		it.e.Retention = v.retention
		kept = append(kept, it)
	}
	return kept
}

// heartbeat tells JetStream, every third of AckWait, that the batch is
// still being worked on, until the returned stop is called.
func heartbeat(msgs []jetstream.Msg, ackWait time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(ackWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress() // acked or termed messages ignore it
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func ack(m jetstream.Msg, log zerolog.Logger) {
	if err := m.Ack(); err != nil {
		// The write is idempotent: a lost ack only means a harmless redelivery.
		log.Warn().Err(err).Msg("ack failed")
	}
}

// decode reads and checks one message. A non-empty reason means the event
// can never be stored.
func decode(m jetstream.Msg) (event.Event, string) {
	var e event.Event
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return e, "undecodable: " + err.Error()
	}
	switch {
	case e.ID == "":
		return e, "missing id"
	case e.PartnerID == "" || e.SubSystemID == "":
		return e, "missing partnerId or subSystemId"
	case strings.TrimSpace(e.EventType) == "":
		return e, "missing eventType"
	case e.EventType == event.OtherType:
		return e, fmt.Sprintf("eventType %q is reserved", event.OtherType)
	case e.Timestamp.IsZero():
		return e, "missing timestamp"
	case m.Subject() != subject.Events(e.PartnerID, e.SubSystemID):
		return e, "subject does not match partnerId and subSystemId"
	}
	if e.ReceivedAt.IsZero() {
		if md, err := m.Metadata(); err == nil {
			e.ReceivedAt = md.Timestamp.UTC()
		}
	}
	return e, ""
}

// deadLetter moves a message to the dead-letter stream with its reason,
// under a subject made from its own subject (never from its body), and
// removes it from EVENTS. The dead letter's Nats-Msg-Id is the original
// stream sequence, so a retried move keeps one copy.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	if err := DeadLetter(ctx, w.js, m.Subject(), m.Data(), m.Headers(), seq, reason); err != nil {
		// Not kept anywhere yet: leave it unacknowledged so it comes back.
		w.log.Error().Err(err).Msg("dead-letter publish failed")
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	w.log.Warn().Str("reason", reason).Str("subject", m.Subject()).Uint64("seq", seq).Msg("event dead-lettered")
	if err := m.Term(); err != nil {
		w.log.Warn().Err(err).Msg("term failed")
	}
}

func (w *Worker) reportPending(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if info, err := cons.Info(ctx); err == nil {
			pending := info.NumPending + uint64(info.NumAckPending)
			mPending.Set(float64(pending))
			if s, err := w.js.Stream(ctx, subject.EventsStream); err == nil {
				// Stored but not purged yet: it grows when an event held for a
				// long time keeps the ack floor down.
				mUnpurged.Set(float64(s.CachedInfo().State.Msgs - min(s.CachedInfo().State.Msgs, pending)))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// graceContext is ctx that outlives cancellation of its parent by grace.
func graceContext(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() { stop(); cancel() }
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }
func (b *backoff) reset()  { b.d = 0 }
func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = 100 * time.Millisecond
	case b.d < 10*time.Second:
		b.d *= 2
	}
	return b.d
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
