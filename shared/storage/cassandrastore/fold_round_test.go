package cassandrastore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/tenant"
)

// manifestsByBucket counts a partner's manifests above applied in each
// claim partition.
func manifestsByBucket(t *testing.T, st *Store, p string) [ClaimBuckets]int {
	t.Helper()
	applied, _, err := st.readApplied(context.Background(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := st.readManifests(context.Background(), p, applied, nil, false, true)
	if err != nil {
		t.Fatal(err)
	}
	var n [ClaimBuckets]int
	for _, m := range ms {
		n[m.bucket]++
	}
	return n
}

// A backlog is folded in rounds of at most foldRound manifests of each
// claim partition: a round takes no more and leaves the rest above applied
// (so a worker far behind never reads its whole backlog at once), reports
// are exact between rounds, and the rounds together count each event once,
// with writes going on between them.
func TestFoldBacklogInRounds(t *testing.T) {
	st := openStore(t)
	st.folder.close() // the test's folds only
	const round = 3
	st.foldRound = round
	ctx := context.Background()
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	ts := time.Now().UTC().Add(-20 * time.Minute)
	evs := batchOf(p, subs, 800, ts)
	// Eight writes of 50: a manifest in most claim partitions each.
	for i := 0; i < 400; i += 50 {
		if _, err := st.WriteEvents(ctx, evs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	before := manifestsByBucket(t, st, p)
	deep := 0 // partitions holding more than a round
	for _, n := range before {
		if n > round {
			deep++
		}
	}
	if deep == 0 {
		t.Fatalf("no claim partition holds more than %d manifests (%v): the test folds no backlog", round, before)
	}
	_, more, err := st.foldPartner(ctx, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !more {
		t.Fatal("a round left manifests up to the cutoff, and said none are left")
	}
	after := manifestsByBucket(t, st, p)
	for b := range ClaimBuckets {
		if want := before[b] - min(before[b], round); after[b] != want {
			t.Fatalf("claim partition %d: %d manifests above applied after a round, want %d (%d before, rounds of %d)", b, after[b], want, before[b], round)
		}
	}
	st.folder.mu.Lock()
	oldest, behind := st.folder.behind[p]
	st.folder.mu.Unlock()
	if !behind || time.Since(time.Unix(0, oldest)) <= 0 {
		t.Fatalf("a round that left manifests does not tell how far behind it is (%v, %d)", behind, oldest)
	}
	wantCounts(t, st, p, subs, ts, 400) // rows and the manifests left, each counted once

	// The rest in rounds, while more is written.
	var wg sync.WaitGroup
	wg.Add(1)
	var werr error
	go func() {
		defer wg.Done()
		for i := 400; i < 800 && werr == nil; i += 50 {
			_, werr = st.WriteEvents(ctx, evs[i:i+50])
		}
	}()
	for range 3 {
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	foldNow(t, st) // the folder's own loop: round after round, to the end
	if n := manifestsAbove(t, st, p); n != 0 {
		t.Fatalf("%d manifests above applied after folding everything", n)
	}
	wantCounts(t, st, p, subs, ts, 800)
	st.folder.mu.Lock()
	_, behind = st.folder.behind[p]
	st.folder.mu.Unlock()
	if behind {
		t.Fatal("folded to the end, and still behind")
	}
}

// A fold that fails says so in the store's log, naming the partner and
// the error, and in how far behind the folder is; counts stay exact.
func TestFailedFoldIsLogged(t *testing.T) {
	var buf syncBuffer
	st := openStoreWith(t, func(c *Config) { c.Log = zerolog.New(&buf) })
	st.folder.close() // the test's folds only
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-20 * time.Minute)
	if _, err := st.WriteEvents(context.Background(), batchOf(p, subs, 10, ts)); err != nil {
		t.Fatal(err)
	}
	st.foldHook = func(stage string) error {
		if stage == "sealed" {
			return errors.New("the node went away")
		}
		return nil
	}
	if err := st.FoldPending(context.Background(), time.Now()); err == nil {
		t.Fatal("a fold that failed returned no error")
	}
	out := buf.String()
	if !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, p) || !strings.Contains(out, "the node went away") {
		t.Fatalf("the failed fold's log line is %q: want a warning naming the partner and the error", out)
	}
	st.folder.mu.Lock()
	_, behind := st.folder.behind[p]
	st.folder.mu.Unlock()
	if !behind {
		t.Fatal("a fold failed, and the folder does not tell it is behind")
	}
	st.foldHook = nil
	wantCounts(t, st, p, subs, ts, 10)
	foldNow(t, st)
	st.folder.mu.Lock()
	_, behind = st.folder.behind[p]
	st.folder.mu.Unlock()
	if behind {
		t.Fatal("folded to the end, and still behind")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
