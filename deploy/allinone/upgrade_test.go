package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsauth"
	"github.com/volcanion/tracking/shared/natsembed"
	"github.com/volcanion/tracking/shared/subject"
)

// TestUpgradeFromLimitsStream: a data dir whose EVENTS stream was made by an
// older version (a 7-day age limit, a consumer that never gives up, events not
// yet stored in it) starts: provisioning updates both in place, the backlog is
// stored and counted once, and the stored events leave the stream. The older
// version's streams belonged to NATS's global account; they move to the TRK
// account the embedded server now has.
func TestUpgradeFromLimitsStream(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	p, subs, _ := s.tenant("upgrade", "web")
	s.stop()

	// Make the data dir as the older version had it: no NATS accounts (the
	// streams under the global account), and the stream, with a backlog.
	acc, err := natsauth.AccountKey(filepath.Join(dir, "nats-auth"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "nats", "jetstream", "jetstream")
	if err := os.Rename(filepath.Join(root, acc), filepath.Join(root, "$G")); err != nil {
		t.Fatal(err)
	}
	ns, err := natsembed.Start(natsembed.Config{DataDir: filepath.Join(dir, "nats"), Name: "volcanion"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, subject.EventsStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: subject.EventsStream, Subjects: []string{subject.EventsAll},
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, MaxAge: 7 * 24 * time.Hour, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, subject.EventsStream, jetstream.ConsumerConfig{Durable: subject.WorkersConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1, FilterSubject: subject.EventsAll}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := 0; i < 300; i++ {
		e := event.Event{ID: fmt.Sprint("old-", i), PartnerID: p, SubSystemID: subs["web"], EventType: "legacy", Timestamp: now, ReceivedAt: now}
		data, _ := json.Marshal(e)
		if _, err := js.Publish(ctx, subject.Events(p, subs["web"]), data, jetstream.WithMsgID(e.MsgID())); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()

	s = startWith(t, dir, func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	s.waitTotal(subs["web"], 300)
	js2, state := streamOf(t, s)
	poll(t, "the stored events to leave the stream", 15*time.Second, func() bool { return state().Msgs == 0 })
	info, err := js2.Stream(ctx, subject.EventsStream)
	if err != nil || info.CachedInfo().Config.MaxAge != 0 {
		t.Fatalf("EVENTS after the upgrade: %v", err)
	}
}
