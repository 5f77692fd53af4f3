package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/edge/internal/groupcommit"
	"github.com/volcanion/tracking/shared/testenv"
)

// setup starts a real JetStream server with a stream S on s.>, and a
// running publisher with cfg.
func setup(t *testing.T, sc jetstream.StreamConfig, cfg groupcommit.Config) (*groupcommit.Publisher, jetstream.Stream) {
	t.Helper()
	ns := testenv.NATS(t)
	nc, js := testenv.Conn(t, ns)
	sc.Name, sc.Subjects = "S", []string{"s.>"}
	if sc.Duplicates == 0 {
		sc.Duplicates = time.Minute
	}
	st, err := js.CreateStream(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	p := groupcommit.New(cfg, nc, js)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.Run(ctx)
	return p, st
}

func msg(id string) *nats.Msg {
	m := nats.NewMsg("s." + id)
	m.Data = []byte(`{"id":"` + id + `"}`)
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

func stored(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// publishAll runs callers goroutines, each publishing per messages per
// call, calls times, and returns every ack by message id.
func publishAll(t *testing.T, p *groupcommit.Publisher, callers, calls, per int, id func(c, k, i int) string) map[string][]groupcommit.Ack {
	t.Helper()
	var mu sync.Mutex
	acks := map[string][]groupcommit.Ack{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range calls {
				msgs := make([]*nats.Msg, per)
				for i := range msgs {
					msgs[i] = msg(id(c, k, i))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res := p.Publish(ctx, msgs)
				cancel()
				mu.Lock()
				for i, a := range res {
					id := msgs[i].Header.Get(jetstream.MsgIDHeader)
					acks[id] = append(acks[id], a)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acks
}

// Many concurrent callers: their messages go out as atomic batches, each
// is answered, and each is stored once.
func TestConcurrentCallersShareBatches(t *testing.T) {
	p, st := setup(t, jetstream.StreamConfig{AllowAtomicPublish: true}, groupcommit.Config{Slots: 1, MinBatch: 2})
	acks := publishAll(t, p, 64, 20, 1, func(c, k, _ int) string { return fmt.Sprintf("c%d-%d", c, k) })
	if len(acks) != 64*20 {
		t.Fatalf("%d messages answered, want %d", len(acks), 64*20)
	}
	for id, a := range acks {
		if len(a) != 1 || a[0].Err != nil || a[0].Duplicate {
			t.Fatalf("%s answered %+v", id, a)
		}
	}
	if n := stored(t, st); n != 64*20 {
		t.Fatalf("stream holds %d messages, want %d", n, 64*20)
	}
	batches, batched, fallbacks := p.Stats()
	if batches == 0 || batched < 64*20/2 || fallbacks != 0 {
		t.Fatalf("batches %d holding %d messages, %d fallbacks: concurrent callers were not grouped", batches, batched, fallbacks)
	}
	t.Logf("%d batches, %d messages in them", batches, batched)
}

// A retried message inside a batch makes the server refuse the whole
// batch; the publisher then sends each on its own, the retry is answered
// as a duplicate and the rest are stored.
func TestDuplicateInsideABatch(t *testing.T) {
	p, st := setup(t, jetstream.StreamConfig{AllowAtomicPublish: true}, groupcommit.Config{MinBatch: 2})
	ctx := context.Background()
	if a := p.Publish(ctx, []*nats.Msg{msg("old")}); a[0].Err != nil {
		t.Fatal(a[0].Err)
	}
	msgs := []*nats.Msg{msg("a"), msg("old"), msg("b"), msg("a")}
	acks := p.Publish(ctx, msgs)
	for i, want := range []bool{false, true, false, true} {
		if acks[i].Err != nil || acks[i].Duplicate != want {
			t.Fatalf("message %d answered %+v, want duplicate=%v", i, acks[i], want)
		}
	}
	if n := stored(t, st); n != 3 {
		t.Fatalf("stream holds %d messages, want 3", n)
	}
	if _, _, fallbacks := p.Stats(); fallbacks != 1 {
		t.Fatalf("%d fallbacks, want 1", fallbacks)
	}
}

// A stream that does not allow atomic batches (provisioned by an older
// version) still takes every message, one by one.
func TestStreamWithoutAtomicBatches(t *testing.T) {
	p, st := setup(t, jetstream.StreamConfig{}, groupcommit.Config{MinBatch: 2, Slots: 2})
	acks := publishAll(t, p, 8, 5, 10, func(c, k, i int) string { return fmt.Sprintf("c%d-%d-%d", c, k, i) })
	for id, a := range acks {
		if len(a) != 1 || a[0].Err != nil {
			t.Fatalf("%s answered %+v", id, a)
		}
	}
	if n := stored(t, st); n != 400 {
		t.Fatalf("stream holds %d messages, want 400", n)
	}
	// Each slot may have tried a batch before the first refusal came back.
	if batches, _, fallbacks := p.Stats(); batches != 0 || fallbacks < 1 || fallbacks > 2 {
		t.Fatalf("%d batches, %d fallbacks: want none, and at most one fallback per slot before atomic batches were switched off", batches, fallbacks)
	}
}

// A full stream refuses a whole batch and nothing of it is stored: no
// half-written group.
func TestFullStreamRefusesWholeBatch(t *testing.T) {
	p, st := setup(t, jetstream.StreamConfig{AllowAtomicPublish: true, MaxBytes: 4096, Discard: jetstream.DiscardNew},
		groupcommit.Config{MinBatch: 2})
	ctx := context.Background()
	var ok, full int
	for k := range 20 {
		msgs := make([]*nats.Msg, 10)
		for i := range msgs {
			msgs[i] = msg(fmt.Sprintf("m%d-%d", k, i))
		}
		acks := p.Publish(ctx, msgs)
		n := 0
		for _, a := range acks {
			if a.Err == nil {
				n++
			}
		}
		switch n {
		case 10:
			ok++
		case 0:
			full++
			var apiErr *jetstream.APIError
			if !errors.As(acks[0].Err, &apiErr) {
				t.Fatalf("refused with %v, want the stream's error", acks[0].Err)
			}
		default:
			t.Fatalf("call %d: %d of 10 stored", k, n)
		}
	}
	if ok == 0 || full == 0 {
		t.Fatalf("%d calls stored, %d refused: want both", ok, full)
	}
	if n := stored(t, st); n != uint64(ok*10) {
		t.Fatalf("stream holds %d messages, want %d", n, ok*10)
	}
	if _, _, fallbacks := p.Stats(); fallbacks != 0 {
		t.Fatalf("%d fallbacks: a full stream is not retried one by one", fallbacks)
	}
}

// A caller whose context ends first gets its error, and the publisher
// goes on serving others.
func TestCallerGivesUp(t *testing.T) {
	p, st := setup(t, jetstream.StreamConfig{AllowAtomicPublish: true}, groupcommit.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a := p.Publish(ctx, []*nats.Msg{msg("late")}); a[0].Err == nil {
		t.Fatal("a cancelled call was answered without an error")
	}
	if a := p.Publish(context.Background(), []*nats.Msg{msg("next")}); a[0].Err != nil {
		t.Fatal(a[0].Err)
	}
	if n := stored(t, st); n < 1 || n > 2 {
		t.Fatalf("stream holds %d messages", n)
	}
}

// Off: every message on its own, however many wait together.
func TestOffPublishesOneByOne(t *testing.T) {
	p, st := setup(t, jetstream.StreamConfig{AllowAtomicPublish: true}, groupcommit.Config{Slots: 1, MinBatch: 2, Off: true})
	acks := publishAll(t, p, 32, 5, 4, func(c, k, i int) string { return fmt.Sprintf("c%d-%d-%d", c, k, i) })
	for id, a := range acks {
		if len(a) != 1 || a[0].Err != nil {
			t.Fatalf("%s answered %+v", id, a)
		}
	}
	if n := stored(t, st); n != 32*5*4 {
		t.Fatalf("stream holds %d messages, want %d", n, 32*5*4)
	}
	if batches, _, fallbacks := p.Stats(); batches != 0 || fallbacks != 0 {
		t.Fatalf("%d batches, %d fallbacks with batches off", batches, fallbacks)
	}
}
