package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/volcanion/tracking/shared/subject"
)

// StreamConfig sizes the event streams.
type StreamConfig struct {
	Replicas int
	// MaxAge must outlast a storage outage: events wait here until stored.
	MaxAge time.Duration
	// MaxBytes bounds the stream; when full, publishes are refused (DiscardNew)
	// and the edge answers 503, rather than old unstored events being dropped.
	MaxBytes int64
	// Duplicates is the Nats-Msg-Id de-duplication window.
	Duplicates time.Duration
}

// DefaultStreamConfig suits one node.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{Replicas: 1, MaxAge: 7 * 24 * time.Hour, MaxBytes: 10 << 30, Duplicates: 10 * time.Minute}
}

// EnsureEventStreams creates the event and dead-letter streams if missing.
// An existing stream is left as it is: changing one is an operator's decision.
func EnsureEventStreams(ctx context.Context, js jetstream.JetStream, c StreamConfig) error {
	if err := ensure(ctx, js, jetstream.StreamConfig{
		Name:        subject.EventsStream,
		Description: "accepted tracking events awaiting storage",
		Subjects:    []string{subject.EventsAll},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
	}); err != nil {
		return err
	}
	return ensure(ctx, js, jetstream.StreamConfig{
		Name:        subject.DeadLetterStream,
		Description: "events that can never be stored, with the reason in a header",
		Subjects:    []string{subject.DeadLetterAll},
		Storage:     jetstream.FileStorage,
		MaxAge:      30 * 24 * time.Hour,
		Replicas:    c.Replicas,
	})
}

// EnsureRegistryStream creates the stream registry changes are broadcast on.
func EnsureRegistryStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return ensure(ctx, js, jetstream.StreamConfig{
		Name:        subject.RegistryChangesStream,
		Description: "registry changes; edges drop cached entries on each",
		Subjects:    []string{subject.RegistryChanges},
		Storage:     jetstream.FileStorage,
		MaxAge:      time.Hour,
		MaxMsgs:     100_000,
		Replicas:    replicas,
	})
}

func ensure(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return Retry(ctx, "create stream "+cfg.Name, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil
		}
		return err
	})
}

// SetupTimeout bounds how long a service waits at start for JetStream (a
// cluster still electing its leader answers nothing for a few seconds).
const SetupTimeout = 2 * time.Minute

// Retry runs a JetStream setup call until it succeeds, ctx ends or
// SetupTimeout passes, backing off between tries.
func Retry(ctx context.Context, what string, fn func(context.Context) error) error {
	deadline := time.Now().Add(SetupTimeout)
	wait := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
			return fmt.Errorf("natsx: %s: %w", what, err) // refused, not unready: retrying will not help
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("natsx: %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
