package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// typedBatches counts the batches written to typed_users, and its reads.
type typedBatches struct {
	mu    sync.Mutex
	n     int
	reads int
}

func (o *typedBatches) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	if strings.Contains(q.Statement, "FROM typed_users") {
		o.mu.Lock()
		o.reads++
		o.mu.Unlock()
	}
}
func (o *typedBatches) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	if len(b.Statements) > 0 && strings.Contains(b.Statements[0], "typed_users") {
		o.mu.Lock()
		o.n++
		o.mu.Unlock()
	}
}

// A fold reads and writes a key's types together: 50 types of one
// sub-system in one minute are a read and a conditional batch (a round of
// Paxos) for each resolution and scope, not one for each type; and each
// type's users read back as its own.
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
	obs.mu.Lock()
	obs.reads = 0
	obs.mu.Unlock()
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// One partition per scope and resolution (every slot here is in one
	// period), 2 × 8 batches: 50 types' rows fit in one each, and are read
	// in one statement.
	if want := len(storage.Resolutions) * 2; obs.n != want || obs.reads != want {
		t.Fatalf("%d batches to typed_users and %d reads of it for %d types, want %d of each (one per partition)", obs.n, obs.reads, types, want)
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
		period := periodOf(storage.Minute, true, minute)
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
			int8(storage.SubSystemTypeUsers), sub, int8(storage.Minute), periodOf(storage.Minute, true, minute), fmt.Sprint("t", typ), minute).Scan(&sk)
		if err != nil || string(sk) != string(exact.Append(nil)) {
			t.Fatalf("type t%d: the minute's row holds %d bytes (%v), want the sketch of its 10 users", typ, len(sk), err)
		}
	}
}

// typedSlotsMax is how many slots of res a typed partition may hold: all
// of a key's types share it, so its rows are types × this.
func typedSlotsMax(res storage.Res) int {
	if res == storage.Minute {
		return 360
	}
	return 96
}

// Every slot starts in one partition, the walk of partitions covers every
// slot once, a typed partition holds few slots, and the partitions of the
// other rows are where they always were (a moved one is a row no reader
// finds).
func TestPartitionSpans(t *testing.T) {
	// The layout of totals before typed spans existed.
	before := func(res storage.Res, t time.Time) int {
		y, m, d := t.UTC().Date()
		switch res {
		case storage.Minute, storage.QuarterHour:
			return y*10000 + int(m)*100 + d
		case storage.HalfHour, storage.Hour, storage.HalfPastHour, storage.SixHours:
			return y*100 + int(m)
		}
		return y
	}
	// Every period fits the column (a Cassandra int), to the last instant a
	// Go time holds (the bus may carry any).
	for _, at := range []time.Time{instant.Min, instant.Max.Add(-time.Minute), time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC)} {
		for _, res := range storage.Resolutions {
			for _, typed := range []bool{false, true} {
				if p := periodOf(res, typed, res.Slot(at)); p < 0 || p > math.MaxInt32 {
					t.Fatalf("%v typed %v: the period of %v is %d, past a Cassandra int", res, typed, at, p)
				}
			}
		}
	}
	// Two years from a Sunday before a leap day, past months' and years'
	// ends and weeks that straddle them.
	from := time.Date(2023, 12, 31, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(2, 0, 0)
	for _, res := range storage.Resolutions {
		step := res.Duration()
		if res == storage.Minute {
			step = 7 * time.Minute // still dense enough to fill each partition
		}
		for _, typed := range []bool{false, true} {
			slots := map[int]int{}
			first, last := map[int]time.Time{}, map[int]time.Time{}
			for s := res.Slot(from); s.Before(to); s = s.Add(step) {
				s = res.Slot(s)
				p := periodOf(res, typed, s)
				start, next := periodStart(res, typed, s), nextPeriod(res, typed, s)
				if s.Before(start) || !s.Before(next) || periodOf(res, typed, start) != p || periodOf(res, typed, next) == p {
					t.Fatalf("%v typed %v: slot %v in partition %d [%v, %v)", res, typed, s, p, start, next)
				}
				if !typed && p != before(res, s) {
					t.Fatalf("%v: slot %v moved from partition %d to %d", res, s, before(res, s), p)
				}
				slots[p]++
				if _, ok := first[p]; !ok {
					first[p] = s
				}
				last[p] = s
			}
			// The walk names each partition once, in order.
			walk := periods(res, typed, res.Slot(from), to)
			if len(walk) != len(slots) {
				t.Fatalf("%v typed %v: the walk names %d partitions, the slots lie in %d", res, typed, len(walk), len(slots))
			}
			for _, p := range walk {
				if slots[p] == 0 {
					t.Fatalf("%v typed %v: the walk names partition %d, which holds no slot", res, typed, p)
				}
			}
			if !typed {
				continue
			}
			for p := range slots {
				if n := int(last[p].Sub(first[p])/res.Duration()) + 1; n > typedSlotsMax(res) {
					t.Fatalf("%v: typed partition %d spans %d slots, want at most %d", res, p, n, typedSlotsMax(res))
				}
			}
		}
	}
}

// A fold puts each row of a type's users in the partition its slot's span
// names, and no partition holds more slots than the span allows: a key
// with 3 types, an event of each every 2 minutes for 30 hours (a day of
// minutes in one partition would be 720 slots).
func TestTypedPartitionsBounded(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	t0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var evs []event.Event
	for m := 0; m < 30*60; m += 2 {
		for typ := range 3 {
			evs = append(evs, event.Event{ID: fmt.Sprint("e", m, "-", typ), PartnerID: p, SubSystemID: sub, EventType: fmt.Sprint("t", typ),
				Timestamp: t0.Add(time.Duration(m) * time.Minute), UserID: fmt.Sprint("u", m%50)})
		}
	}
	for len(evs) > 0 {
		n := min(len(evs), 500)
		if _, err := st.WriteEvents(ctx, evs[:n]); err != nil {
			t.Fatal(err)
		}
		evs = evs[n:]
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	type pk struct {
		a   int8
		key string
		res int8
		per int
	}
	slots := map[pk]map[time.Time]bool{}
	rows := map[pk]int{}
	iter := st.s.Query("SELECT a, key, res, period, type, slot FROM typed_users").Iter()
	var k pk
	var typ string
	var slot time.Time
	for iter.Scan(&k.a, &k.key, &k.res, &k.per, &typ, &slot) {
		if slot.Unix() < 100*24*3600 {
			continue // a pack: its slot is the day of the month
		}
		if want := periodOf(storage.Res(k.res), true, slot); k.per != want {
			t.Fatalf("%v %v row of %v in partition %d, want %d", storage.Res(k.res), typ, slot, k.per, want)
		}
		if slots[k] == nil {
			slots[k] = map[time.Time]bool{}
		}
		slots[k][slot] = true
		rows[k]++
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[storage.Res]bool{}
	for k, s := range slots {
		res := storage.Res(k.res)
		seen[res] = true
		if len(s) > typedSlotsMax(res) || rows[k] > 3*typedSlotsMax(res) {
			t.Fatalf("%v partition %d of scope %d holds %d slots in %d rows, want at most %d slots", res, k.per, k.a, len(s), rows[k], typedSlotsMax(res))
		}
	}
	if len(seen) != len(storage.Resolutions) {
		t.Fatalf("typed rows at %d resolutions, want %d", len(seen), len(storage.Resolutions))
	}
}

// A keyspace whose users of each type were written in the spans of the
// release before (version 21) is marked again when migrated: those rows
// sit in partitions no longer read, so the users of each type are known
// from a day and some after the upgrade on, and a read from before says
// it does not know them rather than answering from rows it cannot find.
func TestTypedSpansMarkedOnUpgrade(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p := tenant.NewID()
	if _, err := st.WriteEvents(ctx, []event.Event{{ID: "a", PartnerID: p, SubSystemID: tenant.NewID(), EventType: "v", Timestamp: time.Now(), UserID: "u"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Back to version 21, as the release before left it.
	for _, q := range []string{"DELETE FROM layout WHERE name = 'typed-users-2'", fmt.Sprintf("DELETE FROM schema_migrations WHERE version = %d", typedSpansVersion)} {
		if err := st.s.Query(q).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, st.cfg.Hosts, st.cfg.Keyspace, "{'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		t.Fatal(err)
	}
	up, err := Open(st.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	up.folder.close()
	// Marked by the step (not the 9999 of a keyspace without the row): a
	// day and some after the upgrade.
	if !up.typedSince.After(time.Now().Add(24*time.Hour)) || up.typedSince.After(time.Now().Add(3*24*time.Hour)) {
		t.Fatalf("after the upgrade the users of each type are kept from %v", up.typedSince)
	}
	if mark, err := readSince(ctx, up.s, typedSpansName); err != nil || !mark.Equal(up.typedSince) {
		t.Fatalf("the layout row typed-users-2: %v %v, the store keeps them from %v", mark, err, up.typedSince)
	}
	// A read from now says it does not know them, not that there are none.
	q := storage.UsersQuery{Scope: storage.PartnerTypeUsers, Key: storage.TypedKey(p, "v"), Res: storage.Hour, From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)}
	if _, err := storage.UserSlots(ctx, up, q); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("the users of a type from before the mark: %v, want errors.ErrUnsupported", err)
	}
	if up.KeepsUsers(storage.PartnerTypeUsers, time.Now()) || !up.KeepsUsers(storage.PartnerTypeUsers, up.typedSince) {
		t.Fatal("the upgraded store keeps the users of each type from another time than its mark")
	}
	// The old mark is not what is read.
	if old, _ := readSince(ctx, up.s, typedName); !old.Equal(time.Unix(0, 0).UTC()) {
		t.Fatalf("the mark of version 21 moved: %v", old)
	}
}
