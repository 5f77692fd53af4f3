package reporter

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
)

// Bumper gives ids new report cache generations (rcache.Cache, rcache.Local):
// an answer cached under an older one is computed again.
type Bumper interface {
	Bump(ctx context.Context, ids ...string) error
}

// followRetry is how long the reporter waits to try following the registry
// again (the stream not provisioned yet, NATS away); a var for tests.
var followRetry = 5 * time.Second

// keepFollowing follows the registry's changes (followRegistry) until ctx
// ends, trying again until it can.
func keepFollowing(ctx context.Context, js jetstream.JetStream, changed func(ctx context.Context, ids []string), log zerolog.Logger) {
	t := time.NewTicker(followRetry)
	defer t.Stop()
	for warned := false; ; {
		err := followRegistry(ctx, js, changed, log)
		if err == nil {
			<-ctx.Done()
			return
		}
		if !warned {
			log.Warn().Err(err).Msg("cannot follow registry changes yet; until then reports may name renamed partners and sub-systems by their old names for a minute, cached ones for up to 10 minutes")
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// followRegistry calls changed with the partner and sub-system of every
// change the registry makes to one, until ctx ends: answers name them
// (partnerName, subSystemName, topSubSystems) from records kept a minute,
// and an answer of a closed range is cached for ClosedTTL (Service.changed).
// It returns once it follows, so no later change is missed. Changes missed
// while the connection was down lag by at most ClosedTTL.
func followRegistry(ctx context.Context, js jetstream.JetStream, changed func(ctx context.Context, ids []string), log zerolog.Logger) error {
	cons, err := js.OrderedConsumer(ctx, subject.RegistryChangesStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	onErr := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn().Err(err).Msg("following registry changes")
	})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ctx.Err() != nil {
			return
		}
		var ch api.Change
		if err := json.Unmarshal(m.Data(), &ch); err != nil {
			log.Warn().Err(err).Msg("undecodable registry change; cached reports may name old names for up to 10 minutes")
			return
		}
		if ch.Kind != api.KindPartner && ch.Kind != api.KindSubSystem {
			return // keys and heartbeats name nothing an answer holds
		}
		var ids []string
		for _, id := range []string{ch.PartnerID, ch.SubSystemID} {
			if id != "" {
				ids = append(ids, id)
			}
		}
		changed(ctx, ids)
	}, onErr)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, cc.Stop)
	return nil
}

// changed forgets the records of ids, then gives them new cache
// generations: the next answer reads their records again and is computed
// again.
func (s *Service) changed(ctx context.Context, ids []string) {
	s.partners.forget(ids...)
	s.subs.forget(ids...)
	s.partnerSubs.forget(ids...) // a sub-system's change names its partner
	if b, ok := s.cache.(Bumper); ok {
		if err := b.Bump(ctx, ids...); err != nil {
			s.log.Warn().Err(err).Msg("cannot tell the report cache about a registry change; cached reports may name old names for up to 10 minutes")
		}
	}
	// After the bump: every near copy is asked about again, and a check
	// that asked before the bump is not recorded. A rename shows at once.
	s.checks.reset()
}
