package cassandrastore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

type afterClaimRound struct {
	mu    sync.Mutex
	armed bool
	fn    func()
}

func (o *afterClaimRound) ObserveQuery(context.Context, gocql.ObservedQuery) {}
func (o *afterClaimRound) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.armed && len(b.Statements) > 0 && strings.HasPrefix(b.Statements[0], "INSERT INTO claims") {
		o.armed = false
		o.fn()
	}
}

// foldPartner reads the manifests in (applied, upTo] at SERIAL, but a
// claim partition whose sealed and applied are both still 0 (never sealed:
// its manifests were all newer than the cutoff when the fold began) gets
// upTo = 0, which readManifests takes as "no bound". The fold then adds
// that partition's unsealed manifests into the rows, raising through past
// manifests that can still commit with an older time. One that does (here:
// a claim round refused for a duplicate id, retried with its original
// manifest time) is covered by through without being in the row: neither
// a report nor a later fold ever counts it.
func TestFoldNeverReadsUnsealed(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	ts := time.Now().UTC().Add(-10 * time.Minute)
	ev := func(id string) event.Event {
		return event.Event{ID: id, PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: ts}
	}
	var inA, inB []string // ids of two claim partitions
	for i := 0; len(inA) < 1 || len(inB) < 3; i++ {
		id := fmt.Sprint("id", i)
		switch claimBucket(id) {
		case 1:
			inA = append(inA, id)
		case 2:
			inB = append(inB, id)
		}
	}
	write := func(s *Store, evs ...event.Event) {
		t.Helper()
		if _, err := s.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	write(st, ev(inA[0])) // partition A: a manifest the next fold seals
	cutoff := time.Now()
	time.Sleep(time.Millisecond)
	write(st, ev(inB[0])) // partition B's first manifest, after the cutoff

	obs := &afterClaimRound{armed: true}
	cfg := st.cfg
	cfg.Observer = obs
	w, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.folder.close()
	obs.fn = func() {
		// Between the refused round and its retry (same manifest time):
		// another writer's later round commits in B, and a fold runs.
		write(st, ev(inB[2]))
		if err := st.FoldPartner(ctx, p, cutoff); err != nil {
			t.Error(err)
		}
	}
	write(w, ev(inB[1]), ev(inB[0])) // inB[0] is a redelivered duplicate: the first round is refused
	if n := partnerTotal(t, st, p, ts); n != 4 {
		t.Errorf("report: %d of 4 events", n)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := partnerTotal(t, st, p, ts); n != 4 {
		t.Errorf("report after a complete fold: %d of 4 events", n)
	}
}

func partnerTotal(t *testing.T, st *Store, p string, ts time.Time) int64 {
	t.Helper()
	return countsTotal(t, st, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: storage.Minute, From: ts.Add(-time.Hour), To: ts.Add(time.Hour)})
}

// countsTotal is the sum of the totals of q's slots.
func countsTotal(t *testing.T, st *Store, q storage.CountsQuery) int64 {
	t.Helper()
	slots, err := st.Counts(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range slots {
		n += s.Total
	}
	return n
}
