package workers

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/subject"
)

// PurgeEvery is how often PurgeStored removes stored events from EVENTS.
var PurgeEvery = time.Second

// PurgeStored removes from EVENTS, every PurgeEvery until ctx ends,
// everything below the workers' consumer's ack floor: each of those events is
// stored or dead-lettered. Every worker process runs it; a purge that another
// already did is a no-op.
func PurgeStored(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) error {
	t := time.NewTicker(PurgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := purgeOnce(ctx, js); err != nil && ctx.Err() == nil {
			mPurgeErrors.Inc()
			log.Warn().Err(err).Msg("purge of stored events failed; retrying")
		}
	}
}

func purgeOnce(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
	if err != nil {
		return err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, subject.EventsStream)
	if err != nil {
		return err
	}
	floor := ci.AckFloor.Stream
	if floor < stream.CachedInfo().State.FirstSeq {
		return nil
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return err
	}
	mPurged.Inc()
	return nil
}
