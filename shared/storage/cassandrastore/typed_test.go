package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// typedBatches counts the batches written to typed_users.
type typedBatches struct {
	mu sync.Mutex
	n  int
}

func (o *typedBatches) ObserveQuery(context.Context, gocql.ObservedQuery) {}
func (o *typedBatches) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	if len(b.Statements) > 0 && strings.Contains(b.Statements[0], "typed_users") {
		o.mu.Lock()
		o.n++
		o.mu.Unlock()
	}
}

// A fold writes a key's types in the same conditional batches: 50 types of
// one sub-system in one minute are a batch (a round of Paxos) for each
// resolution and scope, not one for each type; and each type's users read
// back as its own.
func TestFoldBatchesTypesTogether(t *testing.T) {
	obs := &typedBatches{}
	st := openStoreWith(t, func(c *Config) { c.Observer = obs })
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	minute := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	const types = 50
	var evs []event.Event
	for i := range 2 * types {
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: sub, EventType: fmt.Sprint("type ", i%types),
			Timestamp: minute.Add(time.Duration(i) * 100 * time.Millisecond), UserID: fmt.Sprint("u", i)})
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// One partition per scope and resolution (every slot here is in one
	// period), 2 × 8 batches: 50 types' rows fit in one each.
	if want := len(storage.Resolutions) * 2; obs.n != want {
		t.Fatalf("%d batches to typed_users for %d types, want %d (one per partition)", obs.n, types, want)
	}
	for i := range types {
		typ := fmt.Sprint("type ", i)
		for _, k := range []struct {
			sc storage.UserScope
			id string
		}{{storage.SubSystemTypeUsers, sub}, {storage.PartnerTypeUsers, p}} {
			for _, res := range storage.Resolutions {
				us, err := storage.UserSlots(ctx, st, storage.UsersQuery{Scope: k.sc, Key: storage.TypedKey(k.id, typ), Res: res, From: minute, To: minute.Add(time.Minute)})
				if err != nil {
					t.Fatal(err)
				}
				var want hll.Sketch
				want.Add(storage.UserOf(&evs[i]))
				want.Add(storage.UserOf(&evs[i+types]))
				if len(us) != 1 || string(us[0].Sketch) != string(want.Append(nil)) {
					var got hll.Sketch
					if len(us) == 1 {
						_ = got.MergeBinary(us[0].Sketch)
					}
					t.Fatalf("%s, scope %d, %v: %d slots (%d users), want one of 2 users", typ, k.sc, res, len(us), got.Estimate())
				}
			}
		}
	}
}

// In a keyspace upgraded across the release that keeps each type's users,
// a read of them from before its start says it does not know them
// (errors.ErrUnsupported), and from it on answers.
func TestTypedUsersKeptFromTheirStart(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	since := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	st.typedSince = since // as Migrate records it in a keyspace that held counts
	p, sub := tenant.NewID(), tenant.NewID()
	evs := []event.Event{{ID: "a", PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: since.Add(time.Minute), UserID: "u"}}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	key := storage.TypedKey(sub, "view")
	for _, from := range []time.Time{since.Add(-time.Hour), since.Add(-time.Minute)} {
		q := storage.UsersQuery{Scope: storage.SubSystemTypeUsers, Key: key, Res: storage.Hour, From: from, To: since.Add(time.Hour)}
		if st.KeepsUsers(q.Scope, from) {
			t.Fatalf("keeps the users of a type from %v, before %v", from, since)
		}
		_, err := storage.UserSlots(ctx, st, q)
		errE := st.UserEstimates(ctx, q, func(time.Time, uint64) error { return nil })
		errU := st.UnionEstimates(ctx, storage.UnionsQuery{Scope: q.Scope, Key: key, Unions: [][]storage.Tile{{{Res: storage.Hour, From: q.Res.Slot(from), To: since.Add(time.Hour)}}}}, func(int, uint64) error { return nil })
		for _, e := range []error{err, errE, errU} {
			if !errors.Is(e, errors.ErrUnsupported) {
				t.Fatalf("users of a type from %v (kept from %v): %v, want errors.ErrUnsupported", from, since, e)
			}
		}
		// The users of the sub-system itself are there.
		q.Scope, q.Key = storage.SubSystemUsers, sub
		if us, err := storage.UserSlots(ctx, st, q); err != nil || len(us) != 1 {
			t.Fatalf("the sub-system's users: %v %v", us, err)
		}
	}
	q := storage.UsersQuery{Scope: storage.SubSystemTypeUsers, Key: key, Res: storage.Hour, From: since, To: since.Add(time.Hour)}
	if us, err := storage.UserSlots(ctx, st, q); err != nil || len(us) != 1 || !st.KeepsUsers(q.Scope, since) {
		t.Fatalf("users of a type from their start: %v %v", us, err)
	}
	// A key storage.TypedKey did not make is refused, not read as nothing.
	q.Key = sub + "/a/b"
	if _, err := storage.UserSlots(ctx, st, q); err == nil || errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("a bad typed key: %v", err)
	}
}

// A row of one type that changes between a fold's read and its
// conditional batch fails the batch, and every row of it, of every type,
// is read again and written: none is dropped with the batch.
func TestTypedRowChangedBeforeItsWrite(t *testing.T) {
	var st *Store
	p, sub := tenant.NewID(), tenant.NewID()
	minute := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	// After the fold's read of the minute row of type t0 of sub, before
	// that partition's batch:
	obs := &foldAt{words: []string{"FROM typed_users", "TTL(through)"}, match: func(q gocql.ObservedQuery) bool {
		return len(q.Values) > 4 && q.Values[0] == int8(storage.SubSystemTypeUsers) && q.Values[1] == sub &&
			q.Values[2] == int8(storage.Minute) && q.Values[4] == "t0"
	}, fold: func() {
		// Another writer's row where the fold read none: its condition
		// (through = null) fails.
		period := periodOf(storage.Minute, minute)
		err := st.s.Query("UPDATE typed_users SET through = ? WHERE a = ? AND key = ? AND res = ? AND period = ? AND type = ? AND slot = ?",
			encodeThrough(kindUsers, map[string]int64{"elsewhere/0": 1}), int8(storage.SubSystemTypeUsers), sub, int8(storage.Minute), period, "t0", minute).Exec()
		if err != nil {
			t.Error(err)
		}
	}}
	st = openStoreWith(t, func(c *Config) { c.Observer = obs })
	st.folder.close()
	ctx := context.Background()
	var evs []event.Event
	for i := range 30 {
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: sub, EventType: fmt.Sprint("t", i%3),
			Timestamp: minute.Add(time.Duration(i) * time.Second), UserID: fmt.Sprint("u", i)})
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !obs.fired {
		t.Fatal("the fold read no typed rows")
	}
	// The rows as stored (not merged with manifests as a read would).
	for typ := range 3 {
		var exact hll.Sketch
		for i := range evs {
			if i%3 == typ {
				exact.Add(storage.UserOf(&evs[i]))
			}
		}
		var sk []byte
		err := st.s.Query("SELECT sketch FROM typed_users WHERE a = ? AND key = ? AND res = ? AND period = ? AND type = ? AND slot = ?",
			int8(storage.SubSystemTypeUsers), sub, int8(storage.Minute), periodOf(storage.Minute, minute), fmt.Sprint("t", typ), minute).Scan(&sk)
		if err != nil || string(sk) != string(exact.Append(nil)) {
			t.Fatalf("type t%d: the minute's row holds %d bytes (%v), want the sketch of its 10 users", typ, len(sk), err)
		}
	}
}
