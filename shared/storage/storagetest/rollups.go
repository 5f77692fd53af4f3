package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

type cellID struct {
	r     storage.Rollup
	key   string
	res   storage.Res
	slot  time.Time
	group string
}

type userSlot struct {
	sc   storage.UserScope
	key  string
	res  storage.Res
	slot time.Time
}

// expected is what the stored events must read as.
type expected struct {
	counts map[cellID]int64
	users  map[userSlot]map[string]bool
	keys   map[storage.Rollup]map[string]bool
	ukeys  map[storage.UserScope]map[string]bool
}

func newExpected() *expected {
	x := &expected{counts: map[cellID]int64{}, users: map[userSlot]map[string]bool{},
		keys: map[storage.Rollup]map[string]bool{}, ukeys: map[storage.UserScope]map[string]bool{}}
	for _, r := range storage.Rollups {
		x.keys[r] = map[string]bool{}
	}
	for _, u := range storage.UserScopes {
		x.ukeys[u] = map[string]bool{}
	}
	return x
}

func (x *expected) add(e *event.Event) {
	for _, res := range storage.Resolutions {
		slot := res.Slot(e.Timestamp)
		for _, r := range storage.Rollups {
			k, g := r.Key(e)
			x.keys[r][k] = true
			x.counts[cellID{r, k, res, slot, g}]++
		}
		if u := storage.UserOf(e); u != "" {
			for _, sc := range storage.UserScopes {
				if !sc.Keeps(e) {
					continue
				}
				us := userSlot{sc, sc.Key(e), res, slot}
				x.ukeys[sc][us.key] = true
				if x.users[us] == nil {
					x.users[us] = map[string]bool{}
				}
				x.users[us][u] = true
			}
		}
	}
}

// check compares every rollup, key and resolution over [from, to) with
// what is expected, as totals, by group and for each group alone, and
// every user sketch.
func (x *expected) check(t *testing.T, s storage.Store, from, to time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, r := range storage.Rollups {
		for k := range x.keys[r] {
			for _, res := range storage.Resolutions {
				want := map[time.Time]map[string]int64{}
				groups := map[string]bool{}
				for c, n := range x.counts {
					if c.r == r && c.key == k && c.res == res && !c.slot.Before(res.Slot(from)) && c.slot.Before(to) {
						if want[c.slot] == nil {
							want[c.slot] = map[string]int64{}
						}
						want[c.slot][c.group] = n
						groups[c.group] = true
					}
				}
				q := storage.CountsQuery{Rollup: r, Key: k, Res: res, From: from, To: to, Groups: true}
				slots, err := s.Counts(ctx, q)
				must(t, err)
				if len(slots) != len(want) {
					t.Fatalf("rollup %d key %s %s: %d slots, want %d", r, k, res, len(slots), len(want))
				}
				for i, sl := range slots {
					if i > 0 && !slots[i-1].Start.Before(sl.Start) {
						t.Fatalf("rollup %d %s: slots out of order", r, res)
					}
					if sl.Start.Location() != time.UTC || !sl.Start.Equal(res.Slot(sl.Start)) {
						t.Fatalf("rollup %d %s: slot %v not a UTC %s", r, res, sl.Start, res)
					}
					var total int64
					for g, n := range want[sl.Start] {
						total += n
						if sl.Groups[g] != n {
							t.Fatalf("rollup %d key %s %s slot %v group %q: %d, want %d", r, k, res, sl.Start, g, sl.Groups[g], n)
						}
					}
					if sl.Total != total || len(sl.Groups) != len(want[sl.Start]) {
						t.Fatalf("rollup %d key %s %s slot %v: total %d groups %v, want %d %v", r, k, res, sl.Start, sl.Total, sl.Groups, total, want[sl.Start])
					}
				}
				// Every third slot by name (Only): a read of slots of several
				// partitions (minutes of a day each) reads each once.
				var only storage.Spans
				var named []storage.Slot
				for i := 0; i < len(slots); i += 3 {
					only = append(only, storage.Span{From: slots[i].Start, To: slots[i].Start.Add(res.Duration())})
					named = append(named, slots[i])
				}
				if len(only) > 0 {
					qo := q
					qo.Only = only
					got, err := s.Counts(ctx, qo)
					must(t, err)
					if len(got) != len(named) {
						t.Fatalf("rollup %d key %s %s, %d slots named: %d read", r, k, res, len(named), len(got))
					}
					for i := range got {
						if !got[i].Start.Equal(named[i].Start) || got[i].Total != named[i].Total || !maps.Equal(got[i].Groups, named[i].Groups) {
							t.Fatalf("rollup %d key %s %s, named: %+v, want %+v", r, k, res, got[i], named[i])
						}
					}
				}
				// Totals only, and one group at a time.
				q.Groups = false
				totals, err := s.Counts(ctx, q)
				must(t, err)
				if len(totals) != len(slots) {
					t.Fatalf("rollup %d %s: %d totals-only slots, %d with groups", r, res, len(totals), len(slots))
				}
				for i := range totals {
					if totals[i].Total != slots[i].Total || totals[i].Groups != nil {
						t.Fatalf("rollup %d %s: totals-only slot %+v, with groups %+v", r, res, totals[i], slots[i])
					}
				}
				for g := range groups {
					q.Group = g
					one, err := s.Counts(ctx, q)
					must(t, err)
					n := 0
					for _, gs := range want {
						if gs[g] > 0 {
							n++
						}
					}
					if len(one) != n {
						t.Fatalf("rollup %d %s group %q: %d slots, want %d", r, res, g, len(one), n)
					}
					for _, sl := range one {
						if sl.Total != want[sl.Start][g] {
							t.Fatalf("rollup %d %s group %q slot %v: %d, want %d", r, res, g, sl.Start, sl.Total, want[sl.Start][g])
						}
					}
				}
			}
		}
	}
	// A partner's by type and by sub-system read together (CountsEach)
	// answer as each alone; over the whole range and over every third
	// slot by name.
	for k := range x.keys[storage.PartnerTypes] {
		for _, res := range storage.Resolutions {
			qs := []storage.CountsQuery{
				{Rollup: storage.PartnerTypes, Key: k, Res: res, From: from, To: to, Groups: true},
				{Rollup: storage.PartnerSubSystems, Key: k, Res: res, From: from, To: to, Groups: true},
			}
			one, err := s.Counts(ctx, qs[0])
			must(t, err)
			var only storage.Spans
			for i := 0; i < len(one); i += 3 {
				only = append(only, storage.Span{From: one[i].Start, To: one[i].Start.Add(res.Duration())})
			}
			for _, o := range []storage.Spans{nil, only} {
				if o != nil && len(o) == 0 {
					continue
				}
				qs[0].Only, qs[1].Only = o, o
				each, err := storage.CountsEach(ctx, s, qs)
				must(t, err)
				for i, q := range qs {
					alone, err := s.Counts(ctx, q)
					must(t, err)
					if !slices.EqualFunc(each[i], alone, func(a, b storage.Slot) bool {
						return a.Start.Equal(b.Start) && a.Total == b.Total && maps.Equal(a.Groups, b.Groups)
					}) || len(alone) == 0 {
						t.Fatalf("rollup %d key %s %s (%d named): together %v, alone %v", q.Rollup, k, res, len(o), each[i], alone)
					}
				}
			}
		}
	}
	for _, sc := range storage.UserScopes {
		if !storage.KeepsUsers(s, sc, from) {
			// A store that does not keep them says so, never an answer of none.
			for k := range x.ukeys[sc] {
				q := storage.UsersQuery{Scope: sc, Key: k, Res: storage.Hour, From: from, To: to}
				_, err := storage.UserSlots(ctx, s, q)
				err2 := s.UserEstimates(ctx, q, func(time.Time, uint64) error { return nil })
				if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err2, errors.ErrUnsupported) {
					t.Fatalf("users of scope %d, not kept: %v, estimates %v; want errors.ErrUnsupported", sc, err, err2)
				}
				break
			}
			continue
		}
		for k := range x.ukeys[sc] {
			for _, res := range storage.Resolutions {
				us, err := storage.UserSlots(ctx, s, storage.UsersQuery{Scope: sc, Key: k, Res: res, From: from, To: to})
				must(t, err)
				n := 0
				for u := range x.users {
					if u.sc == sc && u.key == k && u.res == res && !u.slot.Before(res.Slot(from)) && u.slot.Before(to) {
						n++
					}
				}
				if len(us) != n {
					t.Fatalf("users %d %s %s: %d slots, want %d", sc, k, res, len(us), n)
				}
				for _, u := range us {
					var sk hll.Sketch
					must(t, sk.UnmarshalBinary(u.Sketch))
					var exact hll.Sketch // the sketch of exactly the slot's users
					for user := range x.users[userSlot{sc, k, res, u.Start}] {
						exact.Add(user)
					}
					if !bytes.Equal(exact.Append(nil), u.Sketch) {
						t.Fatalf("users %d %s %s slot %v: %d, want %d", sc, k, res, u.Start, sk.Estimate(), exact.Estimate())
					}
				}
			}
		}
	}
}

// Every stored event is counted once at every resolution, in every rollup,
// by group, and its user in every sketch; with duplicates inside and
// across batches, redeliveries of whole batches, a reused id with other
// content, events without a user, and slots at every boundary.
func testRollupResolutions(t *testing.T, s storage.Store) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 9))
	p := tenant.NewID()
	subs := []string{tenant.NewID(), tenant.NewID(), tenant.NewID()}
	// "a" and "a/2": a type may hold "/", which a store may join keys with.
	types := []string{"view", "click", "buy", "sign up", "a", "a/2"}
	base := t0.Truncate(24 * time.Hour).Add(-time.Hour) // across a UTC midnight
	x := newExpected()
	var all []event.Event
	for i := range 600 {
		// Minutes cluster at the boundaries of quarters, hours and days.
		// 150 hours: more than a page of hour sketches (a Cassandra read
		// of sketches goes a page of slots at a time).
		at := base.Add(time.Duration(rng.IntN(150)) * time.Hour).Add(time.Duration(rng.IntN(4)*15+rng.IntN(2)*14) * time.Minute).
			Add(time.Duration(rng.IntN(60)) * time.Second)
		e := ev(p, subs[rng.IntN(len(subs))], fmt.Sprint("r", i), types[rng.IntN(len(types))], at)
		switch rng.IntN(4) {
		case 0:
			e.UserID = fmt.Sprint("user", rng.IntN(40))
		case 1:
			e.AnonymousID = fmt.Sprint("user", rng.IntN(40)) // another namespace: another user
		case 2:
			e.UserID, e.AnonymousID = fmt.Sprint("user", rng.IntN(40)), "anon"
		}
		all = append(all, e)
		x.add(&e)
	}
	// Batches of 50, each written twice; a second writer replays them out
	// of order with duplicates mixed in and a reused id with other content.
	for i := 0; i < len(all); i += 50 {
		batch := all[i:min(i+50, len(all))]
		for range 2 {
			_, err := s.WriteEvents(ctx, batch)
			must(t, err)
		}
	}
	var replay []event.Event
	for i := len(all) - 1; i >= 0; i -= 3 {
		replay = append(replay, all[i])
	}
	other := all[5]
	other.EventType, other.UserID = "other", "someone else"
	replay = append(replay, other)
	r, err := s.WriteEvents(ctx, replay)
	must(t, err)
	if r.Written != 0 || len(r.Conflicts) != 1 {
		t.Fatalf("replay: %+v", r)
	}
	x.check(t, s, base.Add(-time.Hour), base.Add(160*time.Hour))
	// Ranges that cut slots: from inside a slot (taken from its start), to
	// exclusive.
	x.check(t, s, base.Add(7*time.Hour+20*time.Minute+5*time.Second), base.Add(31*time.Hour+15*time.Minute))
	// A store that folds what batches wrote into totals rows (Cassandra)
	// reads the same from the rows.
	if f, ok := s.(interface {
		FoldPending(ctx context.Context, cutoff time.Time) error
	}); ok {
		must(t, f.FoldPending(ctx, time.Now()))
		x.check(t, s, base.Add(-time.Hour), base.Add(160*time.Hour))
		x.check(t, s, base.Add(7*time.Hour+20*time.Minute+5*time.Second), base.Add(31*time.Hour+15*time.Minute))
	}
}

// Writers racing on the same events (all new) count each once, everywhere.
func testRollupsConcurrentWriters(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	x := newExpected()
	var evs []event.Event
	for i := range 120 {
		e := ev(p, sub, fmt.Sprint("c", i), fmt.Sprint("t", i%3), t0.Add(time.Duration(i)*37*time.Second))
		e.UserID = fmt.Sprint("u", i%17)
		evs = append(evs, e)
		x.add(&e)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := append([]event.Event(nil), evs...)
			rand.New(rand.NewPCG(uint64(w), 1)).Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
			for i := 0; i < len(b); i += 40 {
				if _, err := s.WriteEvents(ctx, b[i:i+40]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	x.check(t, s, t0.Add(-time.Hour), t0.Add(3*time.Hour))
}

// A slot names at most storage.MaxGroups groups, the first it counted,
// and counts the rest under storage.OtherGroup, its total exact: a client
// that makes a new event type of each event cannot grow a slot's value
// past what a write holds (and stop its fold, on Cassandra, for good).
// Written in batches, the later ones adding to slots already stored.
func testGroupsBounded(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := partner("many-types"), tenant.NewID()
	hour := t0.Truncate(time.Hour)
	n := storage.MaxGroups + 50
	var evs []event.Event
	for i := range n {
		evs = append(evs, event.Event{ID: fmt.Sprint("g-", i), PartnerID: p.ID, SubSystemID: sub,
			EventType: fmt.Sprintf("viewed_product_%06d", i), Timestamp: hour.Add(time.Duration(i%3600) * time.Second)})
	}
	for k := 0; k < n; k += 2500 {
		must(t, nWrittenErr(s.WriteEvents(ctx, evs[k:min(k+2500, n)])))
	}
	fold := func() {
		if f, ok := s.(interface {
			FoldPending(ctx context.Context, cutoff time.Time) error
		}); ok {
			must(t, f.FoldPending(ctx, time.Now()))
		}
	}
	fold()
	check := func(total, other int64) string {
		t.Helper()
		var named string
		for _, q := range []storage.CountsQuery{
			{Rollup: storage.PartnerTypes, Key: p.ID, Res: storage.Hour},
			{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour},
			{Rollup: storage.PartnerTypes, Key: p.ID, Res: storage.Day},
			{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Week},
		} {
			q.From, q.To, q.Groups = q.Res.Slot(hour), q.Res.Slot(hour).Add(q.Res.Duration()), true
			slots, err := s.Counts(ctx, q)
			must(t, err)
			if len(slots) != 1 {
				t.Fatalf("%v %v: %d slots", q.Rollup, q.Res, len(slots))
			}
			sl := slots[0]
			var sum int64
			for g, c := range sl.Groups {
				sum += c
				if g != storage.OtherGroup && named == "" {
					named = g
				}
			}
			if want := total; sl.Total != want || sum != sl.Total || len(sl.Groups) != storage.MaxGroups+1 || sl.Groups[storage.OtherGroup] != other {
				t.Fatalf("%v %v: total %d (want %d), groups sum %d, %d groups (want %d), %q %d (want %d)",
					q.Rollup, q.Res, sl.Total, want, sum, len(sl.Groups), storage.MaxGroups+1, storage.OtherGroup, sl.Groups[storage.OtherGroup], other)
			}
		}
		// Minutes hold few types each: all named.
		slots, err := s.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p.ID, Res: storage.Minute, From: hour, To: hour.Add(time.Hour), Groups: true})
		must(t, err)
		for _, sl := range slots {
			if _, ok := sl.Groups[storage.OtherGroup]; ok || int64(len(sl.Groups)) > sl.Total {
				t.Fatalf("minute %v: %d groups of %d events", sl.Start, len(sl.Groups), sl.Total)
			}
		}
		return named
	}
	named := check(int64(n), 50)
	// One more of a named type stays named; one of a new type is other,
	// the same before a fold (Cassandra: read from its manifest) as after,
	// and its events are still listed.
	must(t, nWrittenErr(s.WriteEvents(ctx, []event.Event{
		{ID: "g-named", PartnerID: p.ID, SubSystemID: sub, EventType: named, Timestamp: hour.Add(time.Minute)},
		{ID: "g-new", PartnerID: p.ID, SubSystemID: sub, EventType: "viewed_product_new", Timestamp: hour.Add(time.Minute)},
	})))
	for _, folded := range []bool{false, true} {
		if folded {
			fold()
		}
		check(int64(n)+2, 51)
		for _, c := range []struct {
			typ  string
			also bool
			want int64
		}{{named, false, 2}, {"viewed_product_new", false, 0}, {"viewed_product_new", true, 51}, {storage.OtherGroup, false, 51}, {storage.OtherGroup, true, 51}} {
			slots, err := s.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p.ID, Res: storage.Hour, From: hour, To: hour.Add(time.Hour), Group: c.typ, AlsoOther: c.also})
			must(t, err)
			var got int64
			for _, sl := range slots {
				got += sl.Total
			}
			if got != c.want {
				t.Fatalf("folded %v: type %s (and %s: %v) counts %d, want %d", folded, c.typ, storage.OtherGroup, c.also, got, c.want)
			}
		}
		for _, q := range []storage.EventsQuery{{PartnerID: p.ID, EventType: "viewed_product_new"}, {PartnerID: p.ID, SubSystemID: sub, EventType: "viewed_product_new"}} {
			q.From, q.To, q.Limit = hour, hour.Add(time.Hour), 10
			evs, err := s.ListEvents(ctx, q)
			must(t, err)
			if len(evs) != 1 || evs[0].ID != "g-new" {
				t.Fatalf("folded %v: listing %+v: %d events, want g-new", folded, q, len(evs))
			}
		}
	}
}

func nWrittenErr(_ storage.WriteResult, err error) error { return err }
