package cassandrastore

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// BenchmarkCountsBehindBacklog measures a partner's counts by hour over a
// day with a fold backlog (nothing folded): the manifests read once and
// held (shared), and streamed page by page (streamed, as past
// recentBytes), each with the heap it grew by. VT_BENCH_BACKLOG events
// (default 100,000) in batches of 2,000 as the workers write them, 20
// sub-systems, 50 types, 20,000 users.
//
//	VT_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' -bench CountsBehindBacklog -benchtime 3x ./shared/storage/cassandrastore/
func BenchmarkCountsBehindBacklog(b *testing.B) {
	w := openStore(b) // skips without VT_CASSANDRA_HOSTS
	w.folder.close()
	n := 100_000
	if v, err := fmt.Sscan(os.Getenv("VT_BENCH_BACKLOG"), &n); v != 1 || err != nil {
		n = 100_000
	}
	ctx := context.Background()
	p := tenant.NewID()
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	for k := 0; k < n; k += 2000 {
		evs := make([]event.Event, 0, 2000)
		for i := k; i < min(k+2000, n); i++ {
			evs = append(evs, event.Event{ID: fmt.Sprint("b-", i), PartnerID: p, SubSystemID: fmt.Sprint("s", i%20),
				EventType: fmt.Sprint("t", i%50), UserID: fmt.Sprint("u", i*7919%20_000),
				Timestamp: day.Add(time.Duration(i) * (24 * time.Hour / time.Duration(n)))})
		}
		if _, err := w.WriteEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	q := storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: storage.Hour, From: day, To: day.Add(24 * time.Hour), Groups: true}
	for _, mode := range []struct {
		name  string
		bytes int
	}{{"shared", 1 << 40}, {"streamed", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			r := reader(b, w, nil, mode.bytes)
			var peak, held uint64
			heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			for b.Loop() {
				r.forgetRecent(p) // each a report's first read
				runtime.GC()
				metrics.Read(heap)
				before := heap[0].Value.Uint64()
				// The heap's largest during the read, sampled every 2 ms
				// (garbage included: what the process needs meanwhile).
				stop, top := make(chan struct{}), make(chan uint64)
				go func() {
					s := []metrics.Sample{{Name: heap[0].Name}}
					var m uint64
					t := time.NewTicker(2 * time.Millisecond)
					defer t.Stop()
					for {
						metrics.Read(s)
						m = max(m, s[0].Value.Uint64())
						select {
						case <-stop:
							top <- m
							return
						case <-t.C:
						}
					}
				}()
				slots, err := r.Counts(ctx, q)
				close(stop)
				m := <-top
				if err != nil {
					b.Fatal(err)
				}
				var total int64
				for _, s := range slots {
					total += s.Total
				}
				if total != int64(n) {
					b.Fatalf("%d events counted, want %d", total, n)
				}
				runtime.GC()
				metrics.Read(heap)
				if m > before {
					peak = max(peak, m-before)
				}
				if after := heap[0].Value.Uint64(); after > before {
					held = max(held, after-before) // what the read keeps: the shared one, its manifests
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "MiB-peak")
			b.ReportMetric(float64(held)/(1<<20), "MiB-held")
		})
	}
}
