package provision_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/testenv"
)

func TestApplyThenVerify(t *testing.T) {
	_, js := testenv.Conn(t, testenv.NATS(t))
	ctx := context.Background()
	all := provision.NeedEvents | provision.NeedRegistry | provision.NeedConsumer
	err := provision.Verify(ctx, js, all)
	if err == nil || !strings.Contains(err.Error(), "does not exist: run the provisioning step") {
		t.Fatalf("before provisioning: %v", err)
	}
	cfg := provision.DefaultConfig()
	for i := 0; i < 2; i++ { // idempotent
		if err := provision.Apply(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := provision.Verify(ctx, js, all); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, subject.EventsStream)
	c := s.CachedInfo().Config
	if c.Retention != jetstream.LimitsPolicy || c.Discard != jetstream.DiscardNew || c.MaxAge != 0 || c.Duplicates != 30*time.Second {
		t.Fatalf("EVENTS: %+v", c)
	}
	// A changed setting is applied by provisioning again.
	cfg.MaxMsgs, cfg.AckWait = 5000, 45*time.Second
	if err := provision.Apply(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	s, _ = js.Stream(ctx, subject.EventsStream)
	cons, _ := js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
	if s.CachedInfo().Config.MaxMsgs != 5000 || cons.CachedInfo().Config.AckWait != 45*time.Second {
		t.Fatal("a changed setting was not applied")
	}
}

// A stream made another way is refused with the mismatch named; one made by
// an older version (an age limit, no delivery bound) is updated in place by
// provisioning, its unstored events kept.
func TestVerifyNamesMismatch(t *testing.T) {
	_, js := testenv.Conn(t, testenv.NATS(t))
	ctx := context.Background()
	wq := provision.DefaultConfig().EventsStream()
	wq.Retention = jetstream.WorkQueuePolicy
	if _, err := js.CreateStream(ctx, wq); err != nil {
		t.Fatal(err)
	}
	err := provision.Verify(ctx, js, provision.NeedEvents)
	if err == nil || !strings.Contains(err.Error(), "retention is WorkQueue, want Limits") {
		t.Fatalf("verify: %v", err)
	}
	if err := js.DeleteStream(ctx, subject.EventsStream); err != nil {
		t.Fatal(err)
	}
	old := provision.DefaultConfig().EventsStream()
	old.MaxAge = 7 * 24 * time.Hour
	// The server may still be removing the deleted stream's store (under
	// load, make test once got "error creating store for stream"): retry
	// until a deadline.
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := js.CreateStream(ctx, old)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, subject.EventsStream, jetstream.ConsumerConfig{Durable: subject.WorkersConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1, FilterSubject: subject.EventsAll}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "trk.events.p.s", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	err = provision.Verify(ctx, js, provision.NeedEvents|provision.NeedConsumer)
	if err == nil || !strings.Contains(err.Error(), "max age is 168h0m0s, want none") || !strings.Contains(err.Error(), "no trk-max-deliver setting") {
		t.Fatalf("verify an old stream: %v", err)
	}
	if err := provision.Apply(ctx, js, provision.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if err := provision.Verify(ctx, js, provision.NeedEvents|provision.NeedConsumer); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, subject.EventsStream)
	if s.CachedInfo().State.Msgs != 1 {
		t.Fatal("the unstored event was lost in the update")
	}
}

// Services never overwrite an operator's tuning: verifying leaves the
// consumer as it is.
func TestVerifyChangesNothing(t *testing.T) {
	_, js := testenv.Conn(t, testenv.NATS(t))
	ctx := context.Background()
	cfg := provision.DefaultConfig()
	cfg.MaxAckPending = 1234
	if err := provision.Apply(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := provision.Verify(ctx, js, provision.NeedEvents|provision.NeedConsumer); err != nil {
			t.Fatal(err)
		}
	}
	cons, _ := js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
	if got := cons.CachedInfo().Config.MaxAckPending; got != 1234 {
		t.Fatalf("max ack pending %d", got)
	}
}

func TestValidateNamesSetting(t *testing.T) {
	for _, tc := range []struct {
		change func(*provision.Config)
		flag   string
	}{
		{func(c *provision.Config) { c.Replicas = 0 }, "-stream-replicas"},
		{func(c *provision.Config) { c.MaxMsgs = 0 }, "-stream-max-msgs"},
		{func(c *provision.Config) { c.Duplicates = time.Millisecond }, "-stream-duplicates"},
		{func(c *provision.Config) { c.MaxDeliver = 1 }, "-consumer-max-deliver"},
		{func(c *provision.Config) { c.AckWait = 0 }, "-consumer-ack-wait"},
	} {
		c := provision.DefaultConfig()
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s: %v", tc.flag, err)
		}
	}
}

// A partner flooding its own dead letters evicts only its own oldest ones.
func TestDeadLettersBoundedPerSubject(t *testing.T) {
	_, js := testenv.Conn(t, testenv.NATS(t))
	ctx := context.Background()
	if err := provision.Apply(ctx, js, provision.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	cfg := provision.DefaultConfig()
	cfg.DeadLetterMaxPerSubject = 5
	if err := provision.Apply(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject.DeadLetterPrefix+"victim.s", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := js.Publish(ctx, subject.DeadLetterPrefix+"flood.s", []byte("f")); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := js.Stream(ctx, subject.DeadLetterStream)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject.DeadLetterAll))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Subjects[subject.DeadLetterPrefix+"victim.s"] != 1 || info.State.Subjects[subject.DeadLetterPrefix+"flood.s"] != 5 {
		t.Fatalf("dead letters by subject: %v", info.State.Subjects)
	}
}

// An event too big to be dead-lettered with its headers is refused at
// publish, so no event can hold the ack floor by failing to move.
func TestEventsBoundedInSize(t *testing.T) {
	_, js := testenv.Conn(t, testenv.NATS(t))
	ctx := context.Background()
	if err := provision.Apply(ctx, js, provision.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "trk.events.p.s", make([]byte, provision.MaxEventBytes+1)); err == nil {
		t.Fatal("an oversized event was accepted")
	}
	if _, err := js.Publish(ctx, "trk.events.p.s", make([]byte, provision.MaxEventBytes-1024)); err != nil {
		t.Fatal(err)
	}
}
