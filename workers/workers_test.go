package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
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

func (f *flaky) WriteEvents(ctx context.Context, evs []event.Event) (storage.WriteResult, error) {
	f.calls.Add(1)
	if f.failures.Add(-1) >= 0 {
		return storage.WriteResult{}, errors.New("storage down")
	}
	return f.Events.WriteEvents(ctx, evs)
}

func TestMain(m *testing.M) {
	workers.PurgeEvery = 50 * time.Millisecond // tests poll for an empty stream
	os.Exit(m.Run())
}

func setup(t *testing.T, store storage.Events, bus ...func(*provision.Config)) (jetstream.JetStream, context.CancelFunc) {
	ns := testenv.NATS(t)
	_, js := testenv.Conn(t, ns)
	testenv.Provision(t, js, bus...)
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
	go func() { workers.PurgeStored(ctx, js, zerolog.Nop()); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; <-done })
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
		cs, _ := storage.PartnerCounts(context.Background(), pebble, "p1", ts, ts.Add(time.Hour))
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
	raw("trk.events.p1.s1", `{"id":"z","partnerId":"p1","subSystemId":"s1","eventType":"$other","timestamp":"2026-01-01T00:00:00Z"}`)
	publish(t, js, event.Event{ID: "good", PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})

	waitFor(t, "the good event", func() bool { _, err := pebble.GetEvent(ctx, "p1", "good"); return err == nil })
	dlq, err := js.Stream(ctx, subject.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 dead letters", func() bool { info, _ := dlq.Info(ctx); return info != nil && info.State.Msgs == 4 })
	reasons := map[string]bool{}
	for seq := uint64(1); seq <= 4; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		reasons[nats.Header(m.Header).Get(subject.HeaderReason)] = true
	}
	for _, want := range []string{"missing timestamp", "subject does not match partnerId and subSystemId", `eventType "$other" is reserved`} {
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

// refusing is the real Pebble store refusing, as storage would an invalid
// value, every batch that holds one poisoned id.
type refusing struct {
	storage.Events
	poison string
	calls  atomic.Int32
}

func (r *refusing) WriteEvents(ctx context.Context, evs []event.Event) (storage.WriteResult, error) {
	r.calls.Add(1)
	for _, e := range evs {
		if e.ID == r.poison {
			return storage.WriteResult{}, fmt.Errorf("value too large: %w", storage.ErrRefused)
		}
	}
	return r.Events.WriteEvents(ctx, evs)
}

func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	dlq, err := js.Stream(ctx, subject.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if m, err := dlq.GetMsg(ctx, seq); err == nil {
			out = append(out, m)
		}
	}
	return out
}

func eventsLeft(t *testing.T, js jetstream.JetStream) uint64 {
	info, err := js.Stream(context.Background(), subject.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return info.CachedInfo().State.Msgs
}

// A batch that storage refuses is split: the good events are stored, the
// refused one alone is dead-lettered, and nothing loops.
func TestRefusedEventIsSplitOut(t *testing.T) {
	pebble := testenv.Pebble(t)
	store := &refusing{Events: pebble, poison: "e37"}
	js, _ := setup(t, store)
	for i := 0; i < 100; i++ {
		publish(t, js, event.Event{ID: fmt.Sprint("e", i), PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})
	}
	waitFor(t, "the refused event dead-lettered and the rest stored", func() bool {
		return len(deadLetters(t, js)) == 1 && eventsLeft(t, js) == 0
	})
	for i := 0; i < 100; i++ {
		_, err := pebble.GetEvent(context.Background(), "p1", fmt.Sprint("e", i))
		if (err == nil) == (i == 37) {
			t.Fatalf("event e%d: stored=%v", i, err == nil)
		}
	}
	dl := deadLetters(t, js)[0]
	if got := nats.Header(dl.Header).Get(subject.HeaderReason); !strings.HasPrefix(got, "refused by storage") {
		t.Fatalf("reason %q", got)
	}
	if dl.Subject != "trk.dlq.events.p1.s1" || nats.Header(dl.Header).Get(workers.HeaderOriginalSubject) != "trk.events.p1.s1" {
		t.Fatalf("dead letter under %s", dl.Subject)
	}
}

// An id reused with other content is not silently dropped: the second
// event is dead-lettered with the reason; a plain retry is a duplicate.
func TestIDReusedWithOtherContent(t *testing.T) {
	pebble := testenv.Pebble(t)
	js, _ := setup(t, pebble, func(c *provision.Config) { c.Duplicates = time.Second })
	first := event.Event{ID: "same", PartnerID: "p1", SubSystemID: "s1", EventType: "signup", Timestamp: ts}
	publish(t, js, first)
	waitFor(t, "the first event", func() bool { _, err := pebble.GetEvent(context.Background(), "p1", "same"); return err == nil })
	// Past the stream's window, so only storage can tell.
	other := first
	other.EventType = "purchase"
	other.Timestamp = ts.Add(time.Minute)
	retry := first
	retry.Timestamp = ts.Add(2 * time.Minute) // a retry given a new edge timestamp
	waitFor(t, "the duplicate window to pass", func() bool {
		data, _ := json.Marshal(other)
		ack, err := js.Publish(context.Background(), subject.Events("p1", "s1"), data, jetstream.WithMsgID(other.MsgID()))
		return err == nil && !ack.Duplicate
	})
	publish(t, js, retry)
	waitFor(t, "the conflicting event dead-lettered", func() bool { return len(deadLetters(t, js)) == 1 && eventsLeft(t, js) == 0 })
	if got := nats.Header(deadLetters(t, js)[0].Header).Get(subject.HeaderReason); !strings.HasPrefix(got, "id already taken") {
		t.Fatalf("reason %q", got)
	}
	got, _ := pebble.GetEvent(context.Background(), "p1", "same")
	if got.EventType != "signup" || !got.Timestamp.Equal(ts) {
		t.Fatalf("the first event did not keep its id: %+v", got)
	}
	cs, _ := storage.SubSystemCounts(context.Background(), pebble, "s1", ts, ts.Add(time.Hour))
	if len(cs) != 1 || cs[0].Count != 1 {
		t.Fatalf("counts %+v, want signup once", cs)
	}
}

// slow is the real Pebble store whose first write takes several AckWaits.
type slow struct {
	storage.Events
	delay time.Duration
	calls atomic.Int32
}

func (s *slow) WriteEvents(ctx context.Context, evs []event.Event) (storage.WriteResult, error) {
	if s.calls.Add(1) == 1 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
		}
	}
	return s.Events.WriteEvents(ctx, evs)
}

// The heartbeat covers the whole life of a batch: a write slower than
// AckWait is not handed to another worker.
func TestHeartbeatCoversSlowWrite(t *testing.T) {
	pebble := testenv.Pebble(t)
	store := &slow{Events: pebble, delay: 3500 * time.Millisecond}
	js, _ := setup(t, store, func(c *provision.Config) { c.AckWait = time.Second })
	publish(t, js, event.Event{ID: "slow", PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})
	waitFor(t, "the event stored and acknowledged", func() bool { return eventsLeft(t, js) == 0 })
	c, err := js.Consumer(context.Background(), subject.EventsStream, subject.WorkersConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || store.calls.Load() != 1 {
		t.Fatalf("redelivered %d, write calls %d: the batch was not kept in progress", info.NumRedelivered, store.calls.Load())
	}
}

// An event whose holder dies at every delivery is dead-lettered at the
// delivery past the bound, before anything else is done with it, and leaves
// the stream; an event at the bound itself is still stored.
func TestMaxDeliveriesDeadLettered(t *testing.T) {
	pebble := testenv.Pebble(t)
	ns := testenv.NATS(t)
	_, js := testenv.Conn(t, ns)
	testenv.Provision(t, js, func(c *provision.Config) { c.AckWait = time.Second; c.MaxDeliver = 2 })
	ctx := context.Background()
	publish(t, js, event.Event{ID: "crash", PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})
	cons, err := js.Consumer(ctx, subject.EventsStream, subject.WorkersConsumer)
	if err != nil {
		t.Fatal(err)
	}
	// A "worker" that takes events and dies without acknowledging them:
	// "crash" twice (the bound), then "once" once.
	take := func(id string, times int) {
		n := 0
		waitFor(t, "deliveries of "+id, func() bool {
			b, err := cons.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
			if err == nil {
				for m := range b.Messages() {
					var e event.Event
					json.Unmarshal(m.Data(), &e)
					if e.ID != id {
						t.Fatalf("delivered %s while taking %s", e.ID, id)
					}
					n++
				}
			}
			return n == times
		})
	}
	take("crash", 2)
	publish(t, js, event.Event{ID: "once", PartnerID: "p1", SubSystemID: "s1", EventType: "t", Timestamp: ts})
	take("once", 1) // delivered before "crash" comes back, an AckWait later
	// A live worker gets "crash" a third time and dead-letters it unstored,
	// and "once" a second time, at the bound, and stores it.
	wcfg := workers.DefaultConfig()
	wcfg.MaxWait = 50 * time.Millisecond
	w := workers.New(wcfg, js, pebble, nil, zerolog.Nop())
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { w.Run(wctx); done <- struct{}{} }()
	go func() { workers.PurgeStored(wctx, js, zerolog.Nop()); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	waitFor(t, "one dead-lettered, one stored, the stream empty", func() bool {
		_, err := pebble.GetEvent(ctx, "p1", "once")
		return err == nil && len(deadLetters(t, js)) == 1 && eventsLeft(t, js) == 0
	})
	dl := deadLetters(t, js)[0]
	var e event.Event
	json.Unmarshal(dl.Data, &e)
	if got := nats.Header(dl.Header).Get(subject.HeaderReason); e.ID != "crash" || !strings.HasPrefix(got, "not stored after 2 deliveries") {
		t.Fatalf("dead letter %s: %q", e.ID, got)
	}
	if _, err := pebble.GetEvent(ctx, "p1", "crash"); err == nil {
		t.Fatal("the event was stored past its bound instead of being dead-lettered")
	}
}

// toggled refuses the poisoned id while refuse is set.
type toggled struct {
	refusing
	refuse atomic.Bool
}

func (s *toggled) WriteEvents(ctx context.Context, evs []event.Event) (storage.WriteResult, error) {
	if s.refuse.Load() {
		return s.refusing.WriteEvents(ctx, evs)
	}
	return s.refusing.Events.WriteEvents(ctx, evs)
}

// Dead letters are listed, replayed and discarded per partner; a replayed
// event that can now be stored is stored, once.
func TestDeadLetterService(t *testing.T) {
	p1, p2 := tenant.NewID(), tenant.NewID()
	pebble := testenv.Pebble(t)
	store := &toggled{refusing: refusing{Events: pebble, poison: "bad"}}
	store.refuse.Store(true)
	js, _ := setup(t, store)
	ctx := context.Background()
	svcNC, err := nats.Connect(js.Conn().ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer svcNC.Close()
	const admin = "workers-test-admin-token"
	svc, err := workers.ServeDeadLetters(svcNC, js, admintoken.Static(admin), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	publish(t, js, event.Event{ID: "bad", PartnerID: p1, SubSystemID: "s1", EventType: "t", Timestamp: ts})
	publish(t, js, event.Event{ID: "ok", PartnerID: p1, SubSystemID: "s1", EventType: "t", Timestamp: ts})
	if _, err := js.Publish(ctx, subject.Events(p2, "s9"), []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two dead letters", func() bool { return len(deadLetters(t, js)) == 2 && eventsLeft(t, js) == 0 })

	call := func(op string, req dlqapi.Request, out any) error {
		return natsx.Call(natsx.WithAdminToken(ctx, admin), svcNC, dlqapi.Subject(op), req, out)
	}
	// Without the admin credential, or with a wrong one, every operation is refused.
	for _, op := range []string{dlqapi.List, dlqapi.Replay, dlqapi.Discard} {
		for tok, want := range map[string]apierr.Code{"": apierr.AdminRequired, "not-the-admin-token": apierr.AdminInvalid} {
			err := natsx.Call(natsx.WithAdminToken(ctx, tok), svcNC, dlqapi.Subject(op), dlqapi.Request{PartnerID: p1, Seq: 1}, nil)
			if !apierr.Is(err, want) {
				t.Fatalf("%s with token %q: %v, want %s", op, tok, err, want)
			}
		}
	}
	if n := len(deadLetters(t, js)); n != 2 {
		t.Fatalf("refused calls changed the dead letters: %d left", n)
	}
	var page dlqapi.Page
	if err := call(dlqapi.List, dlqapi.Request{PartnerID: p1}, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || !strings.HasPrefix(page.Items[0].Reason, "refused by storage") || page.Items[0].SubSystemID != "s1" {
		t.Fatalf("p1's dead letters: %+v", page)
	}
	var e event.Event
	if err := json.Unmarshal(page.Items[0].Event, &e); err != nil || e.ID != "bad" {
		t.Fatalf("the dead letter's event: %s", page.Items[0].Event)
	}
	p2page := dlqapi.Page{}
	if err := call(dlqapi.List, dlqapi.Request{PartnerID: p2}, &p2page); err != nil || len(p2page.Items) != 1 {
		t.Fatalf("p2's dead letters: %+v %v", p2page, err)
	}
	// A partner cannot reach another's dead letter.
	if err := call(dlqapi.Discard, dlqapi.Request{PartnerID: p1, Seq: p2page.Items[0].Seq}, nil); !apierr.Is(err, apierr.NotFound) {
		t.Fatalf("p1 discarding p2's dead letter: %v", err)
	}
	// Storage takes it now: replay stores it once.
	store.refuse.Store(false)
	var rr dlqapi.ReplayResult
	if err := call(dlqapi.Replay, dlqapi.Request{PartnerID: p1}, &rr); err != nil || len(rr.Replayed) != 1 {
		t.Fatalf("replay: %+v %v", rr, err)
	}
	waitFor(t, "the replayed event stored", func() bool { _, err := pebble.GetEvent(ctx, p1, "bad"); return err == nil })
	if err := call(dlqapi.List, dlqapi.Request{PartnerID: p1}, &page); err != nil || len(page.Items) != 0 {
		t.Fatalf("p1's dead letters after the replay: %+v %v", page, err)
	}
	// p2's undecodable message: replayed, it fails again and comes back.
	if err := call(dlqapi.Replay, dlqapi.Request{PartnerID: p2, Seqs: []uint64{p2page.Items[0].Seq}}, &rr); err != nil {
		t.Fatal(err)
	}
	var again dlqapi.Page
	waitFor(t, "the bad message back in the dead letters", func() bool {
		return call(dlqapi.List, dlqapi.Request{PartnerID: p2}, &again) == nil && len(again.Items) == 1 && again.Items[0].Seq != p2page.Items[0].Seq
	})
	if err := call(dlqapi.Discard, dlqapi.Request{PartnerID: p2, Seq: again.Items[0].Seq}, nil); err != nil {
		t.Fatal(err)
	}
	if err := call(dlqapi.List, dlqapi.Request{PartnerID: p2}, &again); err != nil || len(again.Items) != 0 {
		t.Fatalf("after discard: %+v %v", again, err)
	}
	cs, _ := storage.SubSystemCounts(ctx, pebble, "s1", ts, ts.Add(time.Hour))
	if len(cs) != 1 || cs[0].Count != 2 {
		t.Fatalf("counts %+v, want 2", cs)
	}
}
