// Package workers persists events from the EVENTS stream. Every worker
// process pulls from one durable consumer, so adding processes adds
// throughput. A batch is acknowledged only after storage accepted it; a failed
// write is retried with backoff while the messages are kept in progress.
package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsx"
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
	mWriteErrors = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_worker_write_errors_total",
		Help: "Failed batch writes (each is retried)."})
	mWriteSeconds = promauto.NewHistogram(prometheus.HistogramOpts{Name: "trk_worker_batch_write_duration_seconds",
		Help: "Time to write one batch to storage.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	mPending = promauto.NewGauge(prometheus.GaugeOpts{Name: "trk_consumer_pending_messages",
		Help: "Events in the stream not yet delivered to a worker, plus those delivered and not yet acknowledged."})
)

// Config tunes a worker process.
type Config struct {
	BatchSize int           // messages per fetch and per storage write
	MaxWait   time.Duration // longest wait for a batch to fill
	AckWait   time.Duration // redelivery timeout of an unacknowledged message
	// ShutdownGrace bounds how long a stopping worker keeps retrying the
	// batch in hand; what it cannot write is left unacknowledged and redelivered.
	ShutdownGrace time.Duration
	Streams       natsx.StreamConfig
}

// DefaultConfig is a sensible single-node configuration.
func DefaultConfig() Config {
	return Config{BatchSize: 500, MaxWait: 250 * time.Millisecond, AckWait: 30 * time.Second,
		ShutdownGrace: 10 * time.Second, Streams: natsx.DefaultStreamConfig()}
}

// Validate checks the configuration, naming the bad setting.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return fmt.Errorf("workers: batch size %d: must be 1-10000", c.BatchSize)
	case c.MaxWait <= 0:
		return errors.New("workers: max wait must be positive")
	case c.AckWait < time.Second:
		return errors.New("workers: ack wait must be at least 1s")
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
}

// New makes a worker. dir checks that an event's partner and sub-system
// exist; nil skips the check.
func New(cfg Config, js jetstream.JetStream, store storage.Events, dir Directory, log zerolog.Logger) *Worker {
	return &Worker{cfg: cfg, js: js, store: store, dir: dir, log: log.With().Str("svc", "workers").Logger()}
}

// Consumer creates (or updates) the shared durable consumer.
func (w *Worker) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	if err := natsx.EnsureEventStreams(ctx, w.js, w.cfg.Streams); err != nil {
		return nil, err
	}
	var c jetstream.Consumer
	err := natsx.Retry(ctx, "create the workers consumer", func(ctx context.Context) error {
		var err error
		c, err = w.js.CreateOrUpdateConsumer(ctx, subject.EventsStream, w.consumerConfig())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("workers: consumer: %w", err)
	}
	return c, nil
}

func (w *Worker) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       subject.WorkersConsumer,
		Description:   "workers persisting events to storage",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    -1, // never give up on a storable event
		MaxAckPending: 50_000,
		FilterSubject: subject.EventsAll,
	}
}

// Run consumes until ctx ends, then finishes the batch in hand.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.Consumer(ctx)
	if err != nil {
		return err
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
			w.handle(ctx, msgs)
		}
	}
	return nil
}

// handle stores one batch and acknowledges it.
func (w *Worker) handle(ctx context.Context, msgs []jetstream.Msg) {
	events := make([]event.Event, 0, len(msgs))
	good := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		e, reason := decode(m)
		if reason == "" && w.dir != nil {
			var err error
			if reason, e.Retention, err = w.dir.Check(ctx, e.PartnerID, e.SubSystemID); err != nil {
				// Unknown for now (registry unreachable): try again later.
				w.log.Warn().Err(err).Msg("cannot check the event's partner; retrying later")
				_ = m.NakWithDelay(2 * time.Second)
				continue
			}
		}
		if reason != "" {
			w.deadLetter(ctx, m, e, reason)
			continue
		}
		events = append(events, e)
		good = append(good, m)
	}
	if len(events) == 0 {
		return
	}
	// Once fetched, a batch is finished even if shutdown begins: keep trying
	// for ShutdownGrace past cancellation, then leave it for redelivery.
	wctx, cancel := graceContext(ctx, w.cfg.ShutdownGrace)
	defer cancel()
	backoff := newBackoff()
	lastProgress := time.Now()
	for {
		start := time.Now()
		n, err := w.store.WriteEvents(wctx, events)
		if err == nil {
			mWriteSeconds.Observe(time.Since(start).Seconds())
			mWritten.Add(float64(n))
			mDuplicates.Add(float64(len(events) - n))
			break
		}
		mWriteErrors.Inc()
		if wctx.Err() != nil {
			w.log.Warn().Err(err).Int("events", len(events)).Msg("shutdown before the batch was stored; it will be redelivered")
			return
		}
		w.log.Error().Err(err).Int("events", len(events)).Msg("batch write failed; retrying")
		if time.Since(lastProgress) > w.cfg.AckWait/3 {
			for _, m := range good {
				_ = m.InProgress() // keep the batch ours while storage recovers
			}
			lastProgress = time.Now()
		}
		sleep(wctx, backoff.next())
	}
	for _, m := range good {
		if err := m.Ack(); err != nil {
			// The write is idempotent: a lost ack only means a harmless redelivery.
			w.log.Warn().Err(err).Msg("ack failed")
		}
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

func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, e event.Event, reason string) {
	dl := nats.NewMsg(subject.DeadLetter(e.PartnerID, e.SubSystemID))
	dl.Data = m.Data()
	dl.Header.Set(subject.HeaderReason, reason)
	dl.Header.Set("Trk-Original-Subject", m.Subject())
	if md, err := m.Metadata(); err == nil {
		dl.Header.Set(subject.HeaderMsgID, fmt.Sprintf("dlq:%d", md.Sequence.Stream))
	}
	if _, err := w.js.PublishMsg(ctx, dl); err != nil {
		// Not kept anywhere yet: leave it unacknowledged so it comes back.
		w.log.Error().Err(err).Msg("dead-letter publish failed")
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	label := reason
	if i := strings.IndexByte(label, ':'); i > 0 {
		label = label[:i]
	}
	mDead.WithLabelValues(label).Inc()
	w.log.Warn().Str("reason", reason).Str("subject", m.Subject()).Msg("event dead-lettered")
	_ = m.Term()
}

func (w *Worker) reportPending(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if info, err := cons.Info(ctx); err == nil {
			mPending.Set(float64(info.NumPending + uint64(info.NumAckPending)))
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
