// Package provision owns the JetStream streams and the workers' consumer.
// Provisioning is one explicit step (`registry -provision`, and the
// all-in-one at start); services only verify what they need and fail with an
// error that names the mismatch, so no service start can overwrite an
// operator's tuning.
//
// EVENTS is a buffer, not an archive: the workers purge, every second,
// everything below the consumer's ack floor (every event there is stored or
// dead-lettered), so the stream's limits bound the backlog a storage outage
// can build, never history. This is the equivalent of work-queue retention
// at a fraction of its cost: work-queue removes each acknowledged message on
// its own, which on one node writes and fsyncs a tombstone per event and in
// a cluster replicates a delete per event; a purge is one operation.
package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/subject"
)

// Config sizes the streams and the workers' consumer.
type Config struct {
	Replicas int
	// MaxBytes and MaxMsgs bound the backlog of unstored events; past them a
	// publish is refused (DiscardNew) and the edge answers 503.
	MaxBytes int64
	MaxMsgs  int64
	// Duplicates is the Nats-Msg-Id window: long enough for a client's quick
	// retries; storage de-duplicates anything older. The server keeps each
	// id for the window (about 215 bytes each), so its memory is the ingest
	// rate times the window: 2 minutes at 21,000 events/s held 560 MB.
	Duplicates time.Duration
	// AckWait is how long a worker may hold an event without a heartbeat
	// before it is handed to another worker.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one event; past it a worker
	// dead-letters it with its reason instead of storing it, so it never
	// loops. (JetStream itself never gives up on an event: one it gave up on
	// would sit below the ack floor for good.)
	MaxDeliver int
	// MaxAckPending bounds events handed out and not yet acknowledged.
	MaxAckPending int
	// DeadLetterMaxAge is how long dead letters are kept for replay.
	DeadLetterMaxAge time.Duration
	// DeadLetterMaxBytes bounds the dead letters, and
	// DeadLetterMaxPerSubject those of one sub-system (or one direct
	// publisher's subject): past them the oldest go first, so a partner
	// flooding its own dead letters evicts only its own, and never fills the
	// disk EVENTS needs.
	DeadLetterMaxBytes      int64
	DeadLetterMaxPerSubject int64

	flagPrefix string // what RegisterFlags put before each flag name
}

// DefaultConfig suits one node.
func DefaultConfig() Config {
	return Config{Replicas: 1, MaxBytes: 10 << 30, MaxMsgs: -1, Duplicates: 30 * time.Second,
		AckWait: 30 * time.Second, MaxDeliver: 10, MaxAckPending: 20_000, DeadLetterMaxAge: 30 * 24 * time.Hour,
		DeadLetterMaxBytes: 1 << 30, DeadLetterMaxPerSubject: 100_000}
}

// RegisterFlags adds the -stream-*, -consumer-* and -dead-letter-* flags,
// each name after prefix (their names are already the bus's, so the
// registry and the all-in-one both give "").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.IntVar(&c.Replicas, prefix+"stream-replicas", c.Replicas, "replicas of every stream (3 in a cluster: a 202 then means a quorum stored the event)")
	fs.Int64Var(&c.MaxBytes, prefix+"stream-max-bytes", c.MaxBytes, "backlog of unstored events, in bytes, past which ingest answers 503")
	fs.Int64Var(&c.MaxMsgs, prefix+"stream-max-msgs", c.MaxMsgs, "backlog of unstored events, in events, past which ingest answers 503 (-1: no count limit)")
	fs.DurationVar(&c.Duplicates, prefix+"stream-duplicates", c.Duplicates, "JetStream duplicate window for client retries (storage de-duplicates the rest)")
	fs.DurationVar(&c.AckWait, prefix+"consumer-ack-wait", c.AckWait, "how long a worker may hold an event without a heartbeat before another worker gets it")
	fs.IntVar(&c.MaxDeliver, prefix+"consumer-max-deliver", c.MaxDeliver, "deliveries of one event before it is dead-lettered")
	fs.IntVar(&c.MaxAckPending, prefix+"consumer-max-ack-pending", c.MaxAckPending, "events handed to workers and not yet acknowledged")
	fs.DurationVar(&c.DeadLetterMaxAge, prefix+"dead-letter-max-age", c.DeadLetterMaxAge, "how long dead letters are kept for replay")
	fs.Int64Var(&c.DeadLetterMaxBytes, prefix+"dead-letter-max-bytes", c.DeadLetterMaxBytes, "bytes of dead letters kept (the oldest go first)")
	fs.Int64Var(&c.DeadLetterMaxPerSubject, prefix+"dead-letter-max-per-subject", c.DeadLetterMaxPerSubject, "dead letters kept per sub-system (the oldest go first)")
}

// Validate checks the settings, naming the bad one.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return config.Errorf(c.flagPrefix+"stream-replicas", "must be 1-5")
	case c.MaxBytes < 1<<20:
		return config.Errorf(c.flagPrefix+"stream-max-bytes", "must be at least 1 MiB")
	case c.MaxMsgs == 0 || c.MaxMsgs < -1:
		return config.Errorf(c.flagPrefix+"stream-max-msgs", "must be positive, or -1 for no count limit")
	case c.Duplicates < time.Second || c.Duplicates > time.Hour:
		return config.Errorf(c.flagPrefix+"stream-duplicates", "must be 1s-1h")
	case c.AckWait < time.Second:
		return config.Errorf(c.flagPrefix+"consumer-ack-wait", "must be at least 1s")
	case c.MaxDeliver < 2:
		return config.Errorf(c.flagPrefix+"consumer-max-deliver", "must be at least 2")
	case c.MaxAckPending < 1:
		return config.Errorf(c.flagPrefix+"consumer-max-ack-pending", "must be positive")
	case c.DeadLetterMaxAge < time.Hour:
		return config.Errorf(c.flagPrefix+"dead-letter-max-age", "must be at least 1h")
	case c.DeadLetterMaxBytes < 1<<20:
		return config.Errorf(c.flagPrefix+"dead-letter-max-bytes", "must be at least 1 MiB")
	case c.DeadLetterMaxPerSubject < 1:
		return config.Errorf(c.flagPrefix+"dead-letter-max-per-subject", "must be positive")
	}
	return nil
}

// MaxEventBytes bounds one message in EVENTS.
const MaxEventBytes = 512 << 10

// DedupKeyMeta names the EVENTS stream metadata entry holding the key edges
// derive Nats-Msg-Ids from. Partner credentials cannot read stream info, so
// a partner publishing straight to NATS cannot forge an edge's id (and so
// make JetStream drop another partner's event as a duplicate).
const DedupKeyMeta = "trk-dedup-key"

// EventsStream is the EVENTS stream's configuration.
func (c Config) EventsStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        subject.EventsStream,
		Description: "accepted tracking events awaiting storage (a buffer: the workers purge what is stored)",
		Subjects:    []string{subject.EventsAll},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    c.MaxBytes,
		MaxMsgs:     c.MaxMsgs,
		// Far above any event the edge accepts (64 KiB) and below any
		// server's max_payload (1 MiB by default), so the dead-letter copy of
		// any event, headers added, always fits: an event that could not be
		// dead-lettered would hold the ack floor and stop every purge.
		MaxMsgSize: MaxEventBytes,
		Duplicates: c.Duplicates,
		Replicas:   c.Replicas,
		// Edges group concurrent events into atomic batches, stored with
		// one disk sync each (edge/internal/groupcommit).
		AllowAtomicPublish: true,
	}
}

// DeadLetterStream is the EVENTS_DLQ stream's configuration.
func (c Config) DeadLetterStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              subject.DeadLetterStream,
		Description:       "events that could not be stored, with the reason in a header",
		Subjects:          []string{subject.DeadLetterAll},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            c.DeadLetterMaxAge,
		MaxBytes:          c.DeadLetterMaxBytes,
		MaxMsgsPerSubject: c.DeadLetterMaxPerSubject,
		Duplicates:        c.Duplicates,
		Replicas:          c.Replicas,
	}
}

// RegistryStream is the REGISTRY_CHANGES stream's configuration.
func (c Config) RegistryStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        subject.RegistryChangesStream,
		Description: "registry changes; edges drop cached entries on each",
		Subjects:    []string{subject.RegistryChanges},
		Storage:     jetstream.FileStorage,
		MaxAge:      time.Hour,
		MaxMsgs:     100_000,
		Replicas:    c.Replicas,
	}
}

// WorkersConsumer is the durable consumer every worker process shares.
func (c Config) WorkersConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       subject.WorkersConsumer,
		Description:   "workers persisting events to storage",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: subject.EventsAll,
		Metadata:      map[string]string{MaxDeliverMeta: strconv.Itoa(c.MaxDeliver)},
	}
}

// MaxDeliverMeta names the consumer metadata entry holding the deliveries
// after which workers dead-letter an event.
const MaxDeliverMeta = "trk-max-deliver"

// MaxDeliver reads the workers' bound on deliveries from the consumer.
func MaxDeliver(ci *jetstream.ConsumerInfo) (int, error) {
	n, err := strconv.Atoi(ci.Config.Metadata[MaxDeliverMeta])
	if err != nil || n < 2 {
		return 0, fmt.Errorf("consumer %s has no %s setting: run the provisioning step (registry -provision)", subject.WorkersConsumer, MaxDeliverMeta)
	}
	return n, nil
}

// Apply creates or updates the streams and the consumer to match c. It is
// idempotent, and updates in place what an older version made (its events
// stay in the stream until stored).
func Apply(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	events := c.EventsStream()
	key, err := DedupKey(ctx, js)
	if err != nil && !errors.Is(err, errNoKey) {
		return err
	}
	if key == "" { // first provisioning: a new key; later ones keep it
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		key = hex.EncodeToString(b[:])
	}
	events.Metadata = map[string]string{DedupKeyMeta: key}
	for _, sc := range []jetstream.StreamConfig{events, c.DeadLetterStream(), c.RegistryStream()} {
		if err := natsx.Retry(ctx, "provision stream "+sc.Name, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		}); err != nil {
			return fmt.Errorf("provision: %w", err)
		}
	}
	if err := natsx.Retry(ctx, "provision consumer "+subject.WorkersConsumer, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, subject.EventsStream, c.WorkersConsumer())
		return err
	}); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}

var errNoKey = errors.New("provision: EVENTS has no de-duplication key: run the provisioning step (registry -provision)")

// DedupKey returns the key edges derive Nats-Msg-Ids from.
func DedupKey(ctx context.Context, js jetstream.JetStream) (string, error) {
	var s jetstream.Stream
	err := natsx.Retry(ctx, "read stream "+subject.EventsStream, func(ctx context.Context) error {
		var err error
		s, err = js.Stream(ctx, subject.EventsStream)
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", errNoKey
	} else if err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	key := s.CachedInfo().Config.Metadata[DedupKeyMeta]
	if len(key) < 32 {
		return "", errNoKey
	}
	return key, nil
}

// Need names what a service requires of the bus.
type Need int

const (
	NeedEvents   Need = 1 << iota // EVENTS as a work queue, and EVENTS_DLQ
	NeedRegistry                  // REGISTRY_CHANGES
	NeedConsumer                  // the workers' durable consumer
)

// Verify checks that what a service needs exists and is configured as this
// version requires. It waits (natsx.Retry) while a cluster elects leaders,
// and fails with an error naming the mismatch and the fix.
func Verify(ctx context.Context, js jetstream.JetStream, need Need) error {
	check := func(name string, ok func(jetstream.StreamConfig) string) error {
		var info *jetstream.StreamInfo
		err := natsx.Retry(ctx, "read stream "+name, func(ctx context.Context) error {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			info = s.CachedInfo()
			return nil
		})
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s does not exist: run the provisioning step (registry -provision) first", name)
		} else if err != nil {
			return err
		}
		if msg := ok(info.Config); msg != "" {
			return fmt.Errorf("stream %s: %s: run the provisioning step (registry -provision) to fix it", name, msg)
		}
		return nil
	}
	var errs []error
	if need&NeedEvents != 0 {
		errs = append(errs, check(subject.EventsStream, func(c jetstream.StreamConfig) string {
			switch {
			case c.Retention != jetstream.LimitsPolicy:
				return fmt.Sprintf("retention is %s, want %s (the workers purge what is stored)", c.Retention, jetstream.LimitsPolicy)
			case c.MaxAge != 0:
				return fmt.Sprintf("max age is %s, want none (an age limit would drop unstored events)", c.MaxAge)
			case c.Discard != jetstream.DiscardNew:
				return fmt.Sprintf("discard policy is %s, want %s (never drop unstored events)", c.Discard, jetstream.DiscardNew)
			case len(c.Subjects) != 1 || c.Subjects[0] != subject.EventsAll:
				return fmt.Sprintf("subjects are %v, want [%s]", c.Subjects, subject.EventsAll)
			}
			return ""
		}))
		errs = append(errs, check(subject.DeadLetterStream, func(c jetstream.StreamConfig) string {
			if len(c.Subjects) != 1 || c.Subjects[0] != subject.DeadLetterAll {
				return fmt.Sprintf("subjects are %v, want [%s]", c.Subjects, subject.DeadLetterAll)
			}
			return ""
		}))
	}
	if need&NeedRegistry != 0 {
		errs = append(errs, check(subject.RegistryChangesStream, func(jetstream.StreamConfig) string { return "" }))
	}
	if need&NeedConsumer != 0 {
		errs = append(errs, verifyConsumer(ctx, js))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}

func verifyConsumer(ctx context.Context, js jetstream.JetStream) error {
	var ci *jetstream.ConsumerInfo
	err := natsx.Retry(ctx, "read consumer "+subject.WorkersConsumer, func(ctx context.Context) error {
		c, err := js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
		if err != nil {
			return err
		}
		ci = c.CachedInfo()
		return nil
	})
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("consumer %s on %s does not exist: run the provisioning step (registry -provision) first", subject.WorkersConsumer, subject.EventsStream)
	} else if err != nil {
		return err
	}
	if _, err := MaxDeliver(ci); err != nil {
		return err
	}
	c := ci.Config
	switch {
	case c.AckPolicy != jetstream.AckExplicitPolicy:
		return fmt.Errorf("consumer %s: ack policy is %s, want explicit", subject.WorkersConsumer, c.AckPolicy)
	case c.MaxDeliver != -1:
		return fmt.Errorf("consumer %s: max deliver is %d, want -1 (the workers dead-letter an event past %s; one JetStream gave up on would block the purge of stored events)", subject.WorkersConsumer, c.MaxDeliver, MaxDeliverMeta)
	case c.FilterSubject != subject.EventsAll && c.FilterSubject != "":
		return fmt.Errorf("consumer %s: filter is %s, want %s", subject.WorkersConsumer, c.FilterSubject, subject.EventsAll)
	}
	return nil
}

// Component applies c at start, over a connection connect makes (one that
// may manage JetStream), closed once done: the all-in-one is its own
// operator. Nothing to stop.
func (c Config) Component(connect func() (*nats.Conn, error)) component.Component {
	return &component.Func{N: "provision",
		StartFn: func(ctx context.Context) error {
			nc, err := connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			return Apply(ctx, js, c)
		},
	}
}
