package workers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
// deadReasons are reasonLabel's labels: each series exists from the start at
// 0, so an alert on its increase sees the first dead letter.
var deadReasons = []string{"undecodable", "invalid", "unknown_partner", "unknown_sub_system", "id_conflict", "refused", "max_deliveries", "other"}

func init() {
	for _, r := range deadReasons {
		mDead.WithLabelValues(r)
	}
}

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
