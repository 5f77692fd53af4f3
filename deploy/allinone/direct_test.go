package allinone_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// TestDirectPublish: an internal service publishes straight to NATS. Good
// events are stored and counted; those that can never be stored are kept in
// the dead-letter stream with the reason, never dropped.
func TestDirectPublish(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	pid, subs, _ := s.tenant("internal", "billing")
	// The admin role: this publisher also forges events of partners and
	// sub-systems that do not exist (a partner's own credentials could not).
	nc, err := nats.Connect(s.app.NATSURL(), nats.UserCredentials(s.app.Creds("admin")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	pub := func(subj string, e any) {
		t.Helper()
		data, _ := json.Marshal(e)
		if _, err := js.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	good := event.Event{ID: "inv-1", PartnerID: pid, SubSystemID: subs["billing"], EventType: "invoice_paid", Timestamp: now, Metadata: json.RawMessage(`{"amount":42}`)}
	pub(subject.Events(good.PartnerID, good.SubSystemID), good)
	ghost := tenant.NewID()
	pub(subject.Events(ghost, subs["billing"]), event.Event{ID: "x1", PartnerID: ghost, SubSystemID: subs["billing"], EventType: "t", Timestamp: now})
	strange := tenant.NewID()
	pub(subject.Events(pid, strange), event.Event{ID: "x2", PartnerID: pid, SubSystemID: strange, EventType: "t", Timestamp: now})
	if _, err := js.Publish(ctx, subject.Events(pid, subs["billing"]), []byte("{not json")); err != nil {
		t.Fatal(err)
	}

	s.waitTotal(subs["billing"], 1)
	dlq, err := js.Stream(ctx, subject.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := dlq.Info(ctx)
		if info != nil && info.State.Msgs == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %+v", info.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reasons := map[string]bool{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		reasons[nats.Header(m.Header).Get(subject.HeaderReason)] = true
	}
	for _, r := range []string{"unknown partner", "unknown sub-system of the partner"} {
		if !reasons[r] {
			t.Errorf("no dead letter for %q: %v", r, reasons)
		}
	}
	time.Sleep(200 * time.Millisecond)
	s.waitTotal(subs["billing"], 1)
}
