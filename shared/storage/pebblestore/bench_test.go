package pebblestore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
)

// BenchmarkWriteEvents writes batches of 500 new events, as a worker does.
func BenchmarkWriteEvents(b *testing.B) { benchmarkWrite(b, 0) }

// BenchmarkWriteEventsWithUsers is the same with a user on every event (of
// 20,000), so every resolution's sketches are written too.
func BenchmarkWriteEventsWithUsers(b *testing.B) { benchmarkWrite(b, 20_000) }

// BenchmarkWriteEventsSpread is the worst case for the users of each type:
// 20 sub-systems, 50 types and 20,000 users, each batch's events over a
// day (a backlog drained), so nearly every event is a (sub-system, type)
// of its own in its minute, quarter and half hour.
func BenchmarkWriteEventsSpread(b *testing.B) { benchmarkWriteSpread(b, 20, 50, 24*time.Hour) }

func benchmarkWriteSpread(b *testing.B, subs, types int, over time.Duration) {
	s, err := pebblestore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ts := time.Now().UTC().Add(-over)
	batch := make([]event.Event, 500)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			n := i*500 + j
			at := ts.Add(time.Duration(n*7919%int(over/time.Second)) * time.Second)
			batch[j] = event.Event{ID: fmt.Sprint(i, "-", j), PartnerID: "p", SubSystemID: fmt.Sprint("s", n%subs), EventType: fmt.Sprint("t", n/subs%types),
				Timestamp: at, ReceivedAt: at, Metadata: []byte(`{"path":"/pricing","ref":"news"}`), UserAgent: "Mozilla/5.0",
				UserID: fmt.Sprint("u", n*7919%20_000)}
		}
		if _, err := s.WriteEvents(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

func benchmarkWrite(b *testing.B, users int) {
	s, err := pebblestore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ts := time.Now().UTC()
	batch := make([]event.Event, 500)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = event.Event{ID: fmt.Sprint(i, "-", j), PartnerID: "p", SubSystemID: fmt.Sprint("s", j%4), EventType: fmt.Sprint("t", j%8),
				Timestamp: ts, ReceivedAt: ts, Metadata: []byte(`{"path":"/pricing","ref":"news"}`), UserAgent: "Mozilla/5.0"}
			if users > 0 {
				batch[j].UserID = fmt.Sprint("u", (i*500+j)*7919%users)
			}
		}
		if _, err := s.WriteEvents(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}
