package cassandrastore

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/tenant"
)

// batchCounter counts conditional batches (rounds of Paxos a fold writes).
type batchCounter struct{ n atomic.Int64 }

func (c *batchCounter) ObserveQuery(context.Context, gocql.ObservedQuery) {}
func (c *batchCounter) ObserveBatch(context.Context, gocql.ObservedBatch) { c.n.Add(1) }

// BenchmarkFold measures what a fold costs: rounds of events are written
// with no folder running (not timed), then one FoldPartner folds them
// (timed). Events as the report benchmark's: 20 sub-systems, 50 types,
// 20,000 users, a user on each; one in VT_BENCH_LATE (default 50; 0: none)
// is up to three days late, as mobile clients' queued events are.
//
//	VT_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' -bench Fold -benchtime 1x ./shared/storage/cassandrastore/
func BenchmarkFold(b *testing.B) {
	h := os.Getenv("VT_CASSANDRA_HOSTS")
	if h == "" {
		b.Skip("VT_CASSANDRA_HOSTS is not set")
	}
	hs := strings.Split(h, ",")
	name := fmt.Sprintf("vt_fold_%d", os.Getpid())
	if err := Migrate(context.Background(), hs, name, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		b.Fatal(err)
	}
	defer DropKeyspace(context.Background(), hs, name)
	counter := &batchCounter{}
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Keyspace, cfg.Observer = hs, name, counter
	st, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.folder.close()
	late := 50
	if v, err := strconv.Atoi(os.Getenv("VT_BENCH_LATE")); err == nil && v >= 0 {
		late = v
	}
	const perRound, nSubs, nTypes, users = 20_000, 20, 50, 20_000
	p := tenant.NewID()
	subs := make([]string, nSubs)
	for i := range subs {
		subs[i] = tenant.NewID()
	}
	ctx := context.Background()
	seq := 0
	var rates, batches []float64
	for round := 0; round < 3; round++ {
		now := time.Now().UTC()
		evs := make([]event.Event, perRound)
		for j := range evs {
			seq++
			ts := now.Add(-time.Duration(perRound-j) * 500 * time.Microsecond) // ten seconds of events
			if late > 0 && seq%late == 0 {
				ts = now.Add(-time.Duration(seq*7919%(3*24*3600)) * time.Second)
			}
			evs[j] = event.Event{ID: fmt.Sprint("f", seq), PartnerID: p, SubSystemID: subs[j%nSubs], EventType: fmt.Sprint("t", (j/nSubs)%nTypes),
				Timestamp: ts, ReceivedAt: now, UserID: fmt.Sprint("u", seq*7919%users), KeyID: "abcdefghijklm"}
		}
		for len(evs) > 0 {
			n := min(len(evs), 2000)
			if _, err := st.WriteEvents(ctx, evs[:n]); err != nil {
				b.Fatal(err)
			}
			evs = evs[n:]
		}
		before := counter.n.Load()
		start := time.Now()
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			b.Fatal(err)
		}
		rates = append(rates, perRound/time.Since(start).Seconds())
		batches = append(batches, float64(counter.n.Load()-before))
	}
	med := func(xs []float64) float64 { sort.Float64s(xs); return xs[len(xs)/2] }
	b.ReportMetric(med(rates), "folded-events/s")
	b.ReportMetric(med(batches), "batches/fold")
	fmt.Printf("\nfold of %d events (20 sub-systems, 50 types, 20,000 users, one in %d late): %.0f events/s, %.0f batches a fold (medians of 3: %v)\n",
		perRound, late, med(rates), med(batches), rates)
}
