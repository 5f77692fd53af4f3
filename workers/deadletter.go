package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/subject"
)

// Dead-letter headers, besides subject.HeaderReason.
const (
	HeaderOriginalSubject = "Trk-Original-Subject"
	HeaderOriginalSeq     = "Trk-Original-Seq"
	HeaderDeadAt          = "Trk-Dead-At"
)

// deadLetterSubject keeps the tokens of the event's own subject
// (trk.events.<partner>.<sub-system>), so a body can never choose where its
// dead letter goes.
func deadLetterSubject(original string) string {
	rest, ok := strings.CutPrefix(original, subject.EventsPrefix)
	if !ok || rest == "" {
		rest = "_._"
	}
	return subject.DeadLetterPrefix + rest
}

// DeadLetter publishes a copy of an event message into EVENTS_DLQ with its
// reason and where it came from. The Nats-Msg-Id is the original stream
// sequence, so a retried move is kept once.
func DeadLetter(ctx context.Context, js jetstream.JetStream, subj string, data []byte, hdr nats.Header, seq uint64, reason string) error {
	dl := nats.NewMsg(deadLetterSubject(subj))
	dl.Data = data
	for k, v := range hdr {
		if k != subject.HeaderMsgID && !strings.HasPrefix(k, "Nats-") {
			dl.Header[k] = v
		}
	}
	dl.Header.Set(subject.HeaderReason, reason)
	dl.Header.Set(HeaderOriginalSubject, subj)
	dl.Header.Set(HeaderOriginalSeq, fmt.Sprint(seq))
	dl.Header.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	if seq > 0 {
		dl.Header.Set(subject.HeaderMsgID, fmt.Sprintf("dlq:%d", seq))
	}
	if _, err := js.PublishMsg(ctx, dl); err != nil {
		return fmt.Errorf("workers: dead-letter: %w", err)
	}
	mDead.WithLabelValues(reasonLabel(reason)).Inc()
	return nil
}

// reasonLabel is a bounded metric label for a reason.
func reasonLabel(reason string) string {
	for _, p := range []struct{ prefix, label string }{
		{"undecodable", "undecodable"}, {"missing", "invalid"}, {"subject does not match", "invalid"},
		{"unknown partner", "unknown_partner"}, {"unknown sub-system", "unknown_sub_system"},
		{"id already taken", "id_conflict"}, {"refused by storage", "refused"}, {"not stored after", "max_deliveries"},
	} {
		if strings.HasPrefix(reason, p.prefix) {
			return p.label
		}
	}
	return "other"
}

// maxDeliveriesAdvisory is what JetStream publishes when an event was
// delivered MaxDeliver times without an ack (the worker holding it died each
// time): JetStream will not deliver it again, and work-queue retention keeps
// it in EVENTS until someone removes it.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + subject.EventsStream + "." + subject.WorkersConsumer

// SweepEvery is how often RescueMaxDeliveries looks for events whose
// advisory was lost.
var SweepEvery = 30 * time.Second

// RescueMaxDeliveries dead-letters each event JetStream gave up delivering,
// so it neither loops nor sits in EVENTS for ever, until ctx ends. Every
// worker process runs it; the advisory reaches one of them (a queue group),
// which retries until the event is moved. Advisories are delivered at most
// once, so a sweep also moves any such event it finds: one still in the
// stream though it was delivered and nothing is pending or held.
func RescueMaxDeliveries(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger) error {
	stream, err := js.Stream(ctx, subject.EventsStream)
	if err != nil {
		return fmt.Errorf("workers: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sub, err := nc.QueueSubscribe(maxDeliveriesAdvisory, "workers", func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries int    `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := newBackoff()
			for ctx.Err() == nil {
				err := moveAbandoned(ctx, js, stream, adv.StreamSeq, adv.Deliveries, log)
				if err == nil {
					return
				}
				log.Error().Err(err).Uint64("seq", adv.StreamSeq).Msg("cannot dead-letter an event past its deliveries; retrying")
				sleep(ctx, backoff.next())
			}
		}()
	})
	if err != nil {
		return fmt.Errorf("workers: subscribe to max-deliveries advisories: %w", err)
	}
	defer sub.Unsubscribe()
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := sweep(ctx, js, stream, log); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("sweep for abandoned events failed")
			}
		}
	}
}

// sweep moves events nobody will deliver again: with nothing pending and
// nothing held, every event still in the stream at or below the consumer's
// last delivered sequence was given up on.
func sweep(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, log zerolog.Logger) error {
	cons, err := js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
	if err != nil {
		return err
	}
	ci, err := cons.Info(ctx)
	if err != nil || ci.NumPending > 0 || ci.NumAckPending > 0 {
		return err
	}
	si, err := stream.Info(ctx)
	if err != nil || si.State.Msgs == 0 {
		return err
	}
	last := min(ci.Delivered.Stream, si.State.LastSeq)
	for seq, n := si.State.FirstSeq, 0; seq <= last && n < 10_000; seq, n = seq+1, n+1 {
		if err := moveAbandoned(ctx, js, stream, seq, ci.Config.MaxDeliver, log); err != nil {
			return err
		}
	}
	return nil
}

// moveAbandoned dead-letters the event at seq, if it is still in EVENTS,
// and removes it from there.
func moveAbandoned(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, seq uint64, deliveries int, log zerolog.Logger) error {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := stream.GetMsg(actx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // stored or moved already
	} else if err != nil {
		return err
	}
	reason := fmt.Sprintf("not stored after %d deliveries: the worker holding it stopped each time", deliveries)
	if err := DeadLetter(actx, js, raw.Subject, raw.Data, raw.Header, raw.Sequence, reason); err != nil {
		return err
	}
	if err := stream.DeleteMsg(actx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	log.Warn().Str("reason", reason).Uint64("seq", raw.Sequence).Msg("event dead-lettered")
	return nil
}
