package cassandrastore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// reader opens another process's reader of w's keyspace (its own session,
// floors and manifest reads; no folder), its statements seen by obs when
// set, its shared reads bounded to bytes.
func reader(t testing.TB, w *Store, obs *foldAt, bytes int) *Store {
	t.Helper()
	cfg := w.cfg
	if obs != nil {
		cfg.Observer = obs
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	r.folder.close()
	r.recentBytes = bytes
	return r
}

// Every read a report makes answers the same from manifests streamed as
// from the shared read, over a backlog of a third of the events, another
// third folded and the last third written meanwhile in manifests the
// stream does not hold: counts of each rollup and resolution, users'
// sketches and estimates, and unions of counts, users and sketches.
func TestStreamedReadsMatchShared(t *testing.T) {
	w := openStore(t)
	w.folder.close()
	ctx := context.Background()
	p, subs := tenant.NewID(), []string{tenant.NewID(), tenant.NewID()}
	start := time.Now().UTC().Truncate(time.Hour).Add(-4 * time.Hour)
	var evs []event.Event
	for i := range 900 {
		evs = append(evs, event.Event{ID: fmt.Sprint("e-", i), PartnerID: p, SubSystemID: subs[i%2],
			EventType: []string{"view", "buy", "open"}[i%3], UserID: fmt.Sprint("u", i%97),
			Timestamp: start.Add(time.Duration(i*i%14400) * time.Second)})
	}
	for k := 0; k < 600; k += 20 { // many manifests, in many claim partitions
		if _, err := w.WriteEvents(ctx, evs[k:k+20]); err != nil {
			t.Fatal(err)
		}
		if k == 280 {
			if err := w.FoldPartner(ctx, p, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	shared, streamed := reader(t, w, nil, recentBytes), reader(t, w, nil, 0)

	to := start.Add(4 * time.Hour)
	type read struct {
		name string
		do   func(st *Store) (string, error)
	}
	var reads []read
	for _, rl := range []struct {
		r   storage.Rollup
		key string
	}{{storage.SubSystemTypes, subs[0]}, {storage.PartnerSubSystems, p}, {storage.PartnerTypes, p}} {
		for _, res := range []storage.Res{storage.Minute, storage.Hour, storage.Day} {
			q := storage.CountsQuery{Rollup: rl.r, Key: rl.key, Res: res, From: start, To: to, Groups: true}
			reads = append(reads, read{fmt.Sprintf("counts %v %v", rl.r, res), func(st *Store) (string, error) {
				slots, err := st.Counts(ctx, q)
				return fmt.Sprint(slots), err
			}})
		}
		tiles := [][]storage.Tile{{{Res: storage.Hour, From: start, To: start.Add(2 * time.Hour)}}, {{Res: storage.Hour, From: start.Add(2 * time.Hour), To: to}}}
		q := storage.UnionCountsQuery{Rollup: rl.r, Key: rl.key, Unions: tiles}
		reads = append(reads, read{fmt.Sprintf("union counts %v", rl.r), func(st *Store) (string, error) {
			var out []int64
			err := st.UnionCounts(ctx, q, func(_ int, n int64) error { out = append(out, n); return nil })
			return fmt.Sprint(out), err
		}})
	}
	for _, u := range []struct {
		scope storage.UserScope
		key   string
	}{{storage.SubSystemUsers, subs[1]}, {storage.PartnerUsers, p}, {storage.PartnerTypeUsers, storage.TypedKey(p, "buy")}} {
		for _, res := range []storage.Res{storage.Minute, storage.Hour} {
			q := storage.UsersQuery{Scope: u.scope, Key: u.key, Res: res, From: start, To: to}
			reads = append(reads, read{fmt.Sprintf("users %v %v", u.scope, res), func(st *Store) (string, error) {
				var out []string
				err := st.Users(ctx, q, func(t time.Time, b []byte) error { out = append(out, fmt.Sprintf("%v %x", t, b)); return nil })
				return fmt.Sprint(out), err
			}}, read{fmt.Sprintf("user estimates %v %v", u.scope, res), func(st *Store) (string, error) {
				var out []string
				err := st.UserEstimates(ctx, q, func(t time.Time, n uint64) error { out = append(out, fmt.Sprint(t, n)); return nil })
				return fmt.Sprint(out), err
			}})
		}
		tiles := [][]storage.Tile{{{Res: storage.Hour, From: start, To: start.Add(3 * time.Hour)}}, {{Res: storage.Minute, From: start.Add(3 * time.Hour), To: to}}}
		q := storage.UnionsQuery{Scope: u.scope, Key: u.key, Unions: tiles}
		reads = append(reads, read{fmt.Sprintf("union estimates %v", u.scope), func(st *Store) (string, error) {
			var out []uint64
			err := st.UnionEstimates(ctx, q, func(_ int, n uint64) error { out = append(out, n); return nil })
			return fmt.Sprint(out), err
		}}, read{fmt.Sprintf("union sketches %v", u.scope), func(st *Store) (string, error) {
			var out []string
			err := st.UnionSketches(ctx, q, func(_ int, b []byte) error { out = append(out, fmt.Sprintf("%x", b)); return nil })
			return fmt.Sprint(out), err
		}})
	}

	// The last third, in manifests neither reader has read yet.
	if _, err := w.WriteEvents(ctx, evs[600:]); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(mStreamed)
	for _, r := range reads {
		want, err := r.do(shared)
		if err != nil {
			t.Fatalf("%s, shared: %v", r.name, err)
		}
		if want == "[]" {
			t.Fatalf("%s: nothing read", r.name)
		}
		got, err := r.do(streamed)
		if err != nil {
			t.Fatalf("%s, streamed: %v", r.name, err)
		}
		if got != want {
			t.Fatalf("%s streamed:\n%s\nshared:\n%s", r.name, got, want)
		}
	}
	if n := testutil.ToFloat64(mStreamed) - before; n < float64(len(reads)) {
		t.Fatalf("%v passes streamed for %d reads", n, len(reads))
	}
	// The shared read held them all; the stream's gave up at once.
	shared.recentMu.Lock()
	defer shared.recentMu.Unlock()
	if r := shared.recent[p]; r == nil || r.big || len(r.ms) == 0 {
		t.Fatalf("the shared read did not hold the manifests: big %v, %d", r.big, len(r.ms))
	}
}

// A report behind a backlog bigger than recentBytes streams the manifests
// in two passes around its read of the rows, and holds none of them: a
// fold inside the first pass, which also folds manifests written after the
// pass read their partition, or a fold between the rows and the second
// pass, leaves every count exact. Without the first pass's bound on the
// second, the manifests written meanwhile count twice (in their rows, read
// without through, and again from the second pass).
func TestStreamedCountsWithFoldMidRead(t *testing.T) {
	for _, at := range []struct {
		name  string
		words []string
		write bool // write and fold more in the partition just read
	}{
		{"inside the first pass", []string{"SELECT id, cells, retention FROM claims", "id > ?"}, true},
		{"after the rows", []string{"SELECT a, slot, n FROM totals", "slot >= ?"}, false},
	} {
		t.Run(at.name, func(t *testing.T) {
			w := openStore(t)
			w.folder.close()
			ctx := context.Background()
			p, sub := tenant.NewID(), tenant.NewID()
			hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
			want := map[time.Time]int64{}
			var evs []event.Event
			for i := range 150 {
				e := event.Event{ID: fmt.Sprint("s-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
					Timestamp: hour.Add(time.Duration(i) * 20 * time.Second)}
				evs = append(evs, e)
				want[e.Timestamp.Truncate(time.Minute)]++
			}
			if _, err := w.WriteEvents(ctx, evs[:100]); err != nil {
				t.Fatal(err)
			}
			if err := w.FoldPartner(ctx, p, time.Now()); err != nil {
				t.Fatal(err)
			}
			for _, e := range evs[100:] { // a manifest each: many claim partitions to stream
				if _, err := w.WriteEvents(ctx, []event.Event{e}); err != nil {
					t.Fatal(err)
				}
			}
			// The partition a read of the first pass has read (the stream
			// reads several at once: the first to answer with rows).
			var mu sync.Mutex
			var bucket int16 = -1
			obs := &foldAt{words: at.words, match: func(q gocql.ObservedQuery) bool {
				if !at.write {
					return true
				}
				b, ok := q.Values[1].(int16)
				if ok && q.Rows > 0 {
					mu.Lock()
					if bucket < 0 {
						bucket = b
					}
					mu.Unlock()
				}
				return ok && q.Rows > 0
			}}
			obs.fold = func() {
				// Inside the first pass: events in a minute no manifest
				// read touches, in a partition it has read, folded at once.
				mu.Lock()
				bucket := bucket
				mu.Unlock()
				if bucket >= 0 {
					var late []event.Event
					for i := 0; len(late) < 5; i++ {
						id := fmt.Sprint("late-", i)
						if claimBucket(id) == bucket {
							late = append(late, event.Event{ID: id, PartnerID: p, SubSystemID: sub, EventType: "view",
								Timestamp: hour.Add(55 * time.Minute)})
						}
					}
					if _, err := w.WriteEvents(context.Background(), late); err != nil {
						t.Error(err)
					}
					want[hour.Add(55*time.Minute)] += int64(len(late))
				}
				if err := w.FoldPartner(context.Background(), p, time.Now()); err != nil {
					t.Error(err)
				}
			}
			r := reader(t, w, obs, 2*1024) // a manifest or two: the shared read gives up
			before := testutil.ToFloat64(mStreamed)
			slots, err := r.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Minute, From: hour, To: hour.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if !obs.fired {
				t.Fatalf("no fold ran %s: the reads' statements changed", at.name)
			}
			if n := testutil.ToFloat64(mStreamed) - before; n != 2 {
				t.Fatalf("%v passes streamed, want 2", n)
			}
			r.recentMu.Lock()
			rr := r.recent[p]
			r.recentMu.Unlock()
			if rr == nil || !rr.big || rr.ms != nil {
				t.Fatalf("the shared read holds manifests past recentBytes: %+v", rr)
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

// Manifests of a claim partition may share a time (a claim round refused
// and retried takes sealed+1; a timed-out one keeps its time). One
// committed after a stream's first pass read its partition, with the time
// of one that pass saw, and folded before the rows are read, is in the
// rows alone: the second pass, which knows the first's manifests by id,
// not by time, does not count it again.
func TestStreamedCountsManifestsOfOneTime(t *testing.T) {
	w := openStore(t)
	w.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	e0 := event.Event{ID: "m-0", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: hour}
	if _, err := w.WriteEvents(ctx, []event.Event{e0}); err != nil {
		t.Fatal(err)
	}
	b := claimBucket(e0.ID)
	later := hour.Add(30 * time.Minute) // no manifest the first pass reads touches it
	obs := &foldAt{words: []string{"SELECT id, cells, retention FROM claims", "id > ?"}, match: func(q gocql.ObservedQuery) bool {
		v, ok := q.Values[1].(int16)
		return ok && v == b && q.Rows > 0
	}}
	obs.fold = func() {
		var id string
		if err := w.Session().Query("SELECT id FROM claims WHERE partner_id = ? AND bucket = ? AND id > '~~' AND id < '~~~' LIMIT 1", p, b).Scan(&id); err != nil {
			t.Error(err)
			return
		}
		mt, _ := manifestTime(id)
		cells := map[string]int64{mcell{sub, "view", later.Unix()}.String(): 3}
		if err := w.Session().Query("INSERT INTO claims (partner_id, bucket, id, batch_id, grp, cells, users, retention) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			p, b, manifestID(mt, gocql.TimeUUID(), int(b)*1024), gocql.TimeUUID(), int(b)*1024, cells, map[string][]byte{}, int((90 * 24 * time.Hour).Seconds())).Exec(); err != nil {
			t.Error(err)
			return
		}
		if err := w.FoldPartner(context.Background(), p, time.Now()); err != nil {
			t.Error(err)
		}
	}
	r := reader(t, w, obs, 0) // stream
	slots, err := r.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Minute, From: hour, To: hour.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !obs.fired {
		t.Fatal("the hook did not fire: the stream's statements changed")
	}
	got := map[time.Time]int64{}
	for _, s := range slots {
		got[s.Start] = s.Total
	}
	if want := map[time.Time]int64{hour: 1, later: 3}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("streamed counts %v, want %v", got, want)
	}
}

// The manifests a store holds for reports are bounded over all partners
// (4 × recentBytes), not per partner: past it a read streams, and reads
// older than recentTTL are given back (a reporter writes nothing, so no
// write drops them). The bytes counted always equal those held.
func TestRecentReadsBoundedPerStore(t *testing.T) {
	w := openStore(t)
	w.folder.close()
	ctx := context.Background()
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	var parts, subs []string
	for k := range 6 {
		p, sub := tenant.NewID(), tenant.NewID()
		parts, subs = append(parts, p), append(subs, sub)
		var evs []event.Event
		for i := range 40 {
			evs = append(evs, event.Event{ID: fmt.Sprint("e-", k, "-", i), PartnerID: p, SubSystemID: sub, EventType: fmt.Sprint("t", i),
				UserID: fmt.Sprint("u", i), Timestamp: hour.Add(time.Duration(i) * time.Second)})
		}
		if _, err := w.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	one := 0 // the most one partner's manifests take
	for _, p := range parts {
		ms, err := w.readManifests(ctx, p, [ClaimBuckets]int64{}, nil, true, false)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for i := range ms {
			size += ms[i].size()
		}
		one = max(one, size)
	}
	r := reader(t, w, nil, one+1)
	defer func(d time.Duration) { recentTTL = d }(recentTTL)
	recentTTL = time.Hour
	held := func() (counted, sum int64, n int) {
		r.recentMu.Lock()
		defer r.recentMu.Unlock()
		for _, rr := range r.recent {
			for i := range rr.ms {
				sum += int64(rr.ms[i].size())
			}
			if len(rr.ms) > 0 {
				n++
			}
		}
		return r.recentHeld.Load(), sum, n
	}
	read := func(sub string) {
		t.Helper()
		if _, err := r.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Minute, From: hour, To: hour.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		counted, sum, _ := held()
		if counted != sum || counted > 4*int64(r.recentBytes) {
			t.Fatalf("%d bytes counted, %d held, bound %d", counted, sum, 4*r.recentBytes)
		}
	}
	for _, sub := range subs {
		read(sub)
	}
	if _, _, n := held(); n != 4 {
		t.Fatalf("%d partners' reads held of 6, want 4 (the rest streamed)", n)
	}
	r.recentMu.Lock()
	streaming := len(r.streamUntil)
	r.recentMu.Unlock()
	if streaming != 2 {
		t.Fatalf("%d partners streaming, want 2", streaming)
	}
	// Reads past recentTTL are given back at the next read.
	recentTTL = 0
	read(subs[0])
	if counted, _, n := held(); n != 1 || counted > int64(r.recentBytes) {
		t.Fatalf("after recentTTL: %d partners' reads held, %d bytes", n, counted)
	}
}
