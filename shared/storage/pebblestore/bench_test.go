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
