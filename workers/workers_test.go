package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/testenv"
	"github.com/volcanion/tracking/workers"
)

// flaky is the real Pebble store with its first writes failing, as a
// storage outage would.
type flaky struct {
	storage.Events
	failures atomic.Int32
	calls    atomic.Int32
}

func (f *flaky) WriteEvents(ctx context.Context, evs []event.Event) (int, error) {
	f.calls.Add(1)
	if f.failures.Add(-1) >= 0 {
		return 0, errors.New("storage down")
	}
	return f.Events.WriteEvents(ctx, evs)
}

func setup(t *testing.T, store storage.Events) (jetstream.JetStream, context.CancelFunc) {
	ns := testenv.NATS(t)
	_, js := testenv.Conn(t, ns)
	cfg := workers.DefaultConfig()
	cfg.MaxWait = 50 * time.Millisecond
	w := workers.New(cfg, js, store, nil, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := w.Consumer(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for i := 0; i < 2; i++ { // two loops share the durable consumer
		go func() { w.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })
	return js, cancel
}

func publish(t *testing.T, js jetstream.JetStream, e event.Event) {
	t.Helper()
	data, _ := json.Marshal(e)
	if _, err := js.Publish(context.Background(), subject.Events(e.PartnerID, e.SubSystemID), data, jetstream.WithMsgID(e.MsgID())); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var ts = time.Now().UTC().Truncate(time.Hour)

func TestStoresAndRetries(t *testing.T) {
	pebble := testenv.Pebble(t)
	store := &flaky{Events: pebble}
	store.failures.Store(3)
	js, _ := setup(t, store)
	for i := 0; i < 100; i++ {
		publish(t, js, event.Event{ID: fmt.Sprint("e", i), PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})
	}
	total := func() int64 {
		cs, _ := pebble.PartnerCounts(context.Background(), "p1", ts, ts.Add(time.Hour))
		var n int64
		for _, c := range cs {
			n += c.Count
		}
		return n
	}
	waitFor(t, "100 events stored despite 3 failed writes", func() bool { return total() == 100 })
	if store.calls.Load() < 4 {
		t.Fatalf("only %d write calls: the failures were not retried", store.calls.Load())
	}
	// Nothing is left pending: every message was acknowledged.
	waitFor(t, "the consumer to drain", func() bool {
		c, err := js.Consumer(context.Background(), subject.EventsStream, subject.WorkersConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if total() != 100 {
		t.Fatalf("total %d after drain", total())
	}
}

func TestDeadLetters(t *testing.T) {
	pebble := testenv.Pebble(t)
	js, _ := setup(t, pebble)
	ctx := context.Background()
	raw := func(subj, body string) {
		if _, err := js.Publish(ctx, subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	raw("trk.events.p1.s1", `not json`)
	raw("trk.events.p1.s1", `{"id":"x","partnerId":"p1","subSystemId":"s1","eventType":"t"}`) // no timestamp
	raw("trk.events.p1.s1", `{"id":"y","partnerId":"p2","subSystemId":"s1","eventType":"t","timestamp":"2026-01-01T00:00:00Z"}`)
	publish(t, js, event.Event{ID: "good", PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})

	waitFor(t, "the good event", func() bool { _, err := pebble.GetEvent(ctx, "p1", "good"); return err == nil })
	dlq, err := js.Stream(ctx, subject.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 dead letters", func() bool { info, _ := dlq.Info(ctx); return info != nil && info.State.Msgs == 3 })
	reasons := map[string]bool{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		reasons[nats.Header(m.Header).Get(subject.HeaderReason)] = true
	}
	for _, want := range []string{"missing timestamp", "subject does not match partnerId and subSystemId"} {
		if !reasons[want] {
			t.Errorf("no dead letter with reason %q: %v", want, reasons)
		}
	}
	if _, err := pebble.GetEvent(ctx, "p2", "y"); err == nil {
		t.Fatal("a mismatched event was stored")
	}
}

func TestConfigValidate(t *testing.T) {
	c := workers.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.BatchSize = 0
	if c.Validate() == nil {
		t.Fatal("batch size 0 accepted")
	}
}
