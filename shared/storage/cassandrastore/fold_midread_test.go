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

// foldAt runs a fold once, right after the first query whose statement
// holds every one of its words (the driver tells observers synchronously).
type foldAt struct {
	words []string
	match func(gocql.ObservedQuery) bool // when set, the statement must pass it too
	fold  func()
	once  sync.Once
	fired bool
}

func (f *foldAt) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	for _, w := range f.words {
		if !strings.Contains(q.Statement, w) {
			return
		}
	}
	if f.match != nil && !f.match(q) {
		return
	}
	f.once.Do(func() { f.fired = true; f.fold() })
}

func (f *foldAt) ObserveBatch(context.Context, gocql.ObservedBatch) {}

// midRead writes 150 events of a new partner's sub-system over an hour
// two hours ago, folds the first 100 and leaves the rest in manifests. It
// returns another process's reader (its own session, floors and manifest
// reads) whose first statement holding every one of words folds them, and
// each slot's count at res.
func midRead(t *testing.T, words []string, res storage.Res) (r *Store, obs *foldAt, p, sub string, hour time.Time, want map[time.Time]int64) {
	t.Helper()
	w := openStore(t)
	w.folder.close()
	ctx := context.Background()
	p, sub = tenant.NewID(), tenant.NewID()
	hour = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	evs := make([]event.Event, 150)
	want = map[time.Time]int64{}
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprint("m-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			Timestamp: hour.Add(time.Duration(i) * 20 * time.Second)}
		want[res.Slot(evs[i].Timestamp)]++
	}
	if _, err := w.WriteEvents(ctx, evs[:100]); err != nil {
		t.Fatal(err)
	}
	if err := w.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteEvents(ctx, evs[100:]); err != nil { // in manifests only, until the fold
		t.Fatal(err)
	}
	obs = &foldAt{words: words, fold: func() {
		if err := w.FoldPartner(context.Background(), p, time.Now()); err != nil {
			t.Error(err)
		}
	}}
	return reader(t, w, obs, recentBytes), obs, p, sub, hour, want
}

// A fold that lands inside a report's read of counts: after its read of the
// manifests, or after its read of the rows (which come without through)
// and before the slots a manifest adds to are read again whole. Every
// minute's count stays exact.
// With more such slots than maxExact, the range is read with through.
// Hours are read from their day's pack (pack.go), then the same way.
func TestFoldInsideACountsRead(t *testing.T) {
	for _, at := range []struct {
		name     string
		words    []string
		maxExact int
		res      storage.Res
	}{
		{"after the manifests", []string{"FROM claims", "id > ?"}, maxExact, storage.Minute},
		{"after the rows", []string{"SELECT a, slot, n FROM totals", "slot >= ?"}, maxExact, storage.Minute},
		{"after the rows read with through", []string{"SELECT a, slot, n, through FROM totals", "slot >= ?"}, 3, storage.Minute},
		{"hours, after the manifests", []string{"FROM claims", "id > ?"}, maxExact, storage.Hour},
		{"hours, after the packs", []string{"SELECT slot, pack, sealed FROM totals"}, maxExact, storage.Hour},
	} {
		t.Run(at.name, func(t *testing.T) {
			defer func(was int) { maxExact = was }(maxExact)
			maxExact = at.maxExact
			ctx := context.Background()
			r, obs, _, sub, hour, want := midRead(t, at.words, at.res)
			slots, err := r.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: at.res, From: hour, To: hour.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if !obs.fired {
				t.Fatalf("no fold ran %s: the reads' statements changed", at.name)
			}
			got := map[time.Time]int64{}
			for _, sl := range slots {
				got[sl.Start] = sl.Total
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("counts with a fold %s:\n%v\nwant\n%v", at.name, got, want)
			}
		})
	}
}

// The same for a partner's counts by type and by sub-system read together
// (CountsEach: one statement for both rollups' rows), and apart (more
// slots to read again than maxExact): each minute's figures exact in both.
func TestFoldInsideCountsEach(t *testing.T) {
	for _, at := range []struct {
		name     string
		words    []string
		maxExact int
	}{
		{"after the manifests", []string{"FROM claims", "id > ?"}, maxExact},
		{"after the rows of both", []string{"a IN ?", "slot >= ?"}, maxExact},
		{"apart, after the rows read with through", []string{"SELECT a, slot, n, through", "slot >= ?"}, 3},
	} {
		t.Run(at.name, func(t *testing.T) {
			defer func(was int) { maxExact = was }(maxExact)
			maxExact = at.maxExact
			ctx := context.Background()
			r, obs, p, sub, hour, want := midRead(t, at.words, storage.Minute)
			qs := []storage.CountsQuery{
				{Rollup: storage.PartnerTypes, Key: p, Res: storage.Minute, From: hour, To: hour.Add(time.Hour), Groups: true},
				{Rollup: storage.PartnerSubSystems, Key: p, Res: storage.Minute, From: hour, To: hour.Add(time.Hour), Groups: true},
			}
			each, err := r.CountsEach(ctx, qs)
			if err != nil {
				t.Fatal(err)
			}
			if !obs.fired {
				t.Fatalf("no fold ran %s: the reads' statements changed", at.name)
			}
			for i, group := range []string{"view", sub} {
				got, gotGroup := map[time.Time]int64{}, map[time.Time]int64{}
				for _, sl := range each[i] {
					got[sl.Start], gotGroup[sl.Start] = sl.Total, sl.Groups[group]
				}
				if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(gotGroup) != fmt.Sprint(want) {
					t.Fatalf("rollup %d with a fold %s:\n%v\n%v\nwant\n%v", qs[i].Rollup, at.name, got, gotGroup, want)
				}
			}
		})
	}
}
