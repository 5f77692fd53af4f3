package cassandrastore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Hours before the packs' start are read as rows; PackHours packs hours
// folded without them, after which they read from packs with the same
// figures. The packs are what is read: with the start moved back over
// hours never packed, those hours read as nothing.
func TestPackHours(t *testing.T) {
	st := openStore(t)
	// Reads do not seal: this test deletes rows of ended days as an
	// upgrade leaves them, and a seal in the background (a Paxos write)
	// may carry a later timestamp than the delete, and outlive it.
	st.sealSince = time.Now().AddDate(1, 0, 0)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var evs []event.Event
	for i := range 900 {
		evs = append(evs, event.Event{ID: fmt.Sprint("p-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			UserID: fmt.Sprint("u", i%300), Timestamp: at.Add(time.Duration(i) * 3 * time.Minute)}) // 45 hours
	}
	if _, err := st.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	from, to := at, at.Add(48*time.Hour)
	figures := func() string {
		t.Helper()
		counts, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		var est []string
		if err := st.UserEstimates(ctx, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Hour, From: from, To: to}, func(s time.Time, n uint64) error {
			est = append(est, fmt.Sprint(s.Format(time.RFC3339), "=", n))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(len(counts), counts, est)
	}
	want := figures() // a new keyspace: packs from the start
	if want[:3] != "45 " {
		t.Fatalf("figures %s", want)
	}
	// As if folded before packs were kept: no pack, the start after them.
	for _, k := range []struct {
		kind, a int8
		key     string
	}{{kindCounts, int8(storage.SubSystemTypes), sub}, {kindUsers, int8(storage.PartnerUsers), p}} {
		for _, period := range periods(storage.Hour, false, from, to) {
			if err := st.s.Query("DELETE FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot >= ? AND slot <= ?",
				k.kind, k.a, k.key, int8(storage.Hour), period, time.UnixMilli(1), time.UnixMilli(31)).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.packsSince = time.Now().AddDate(1, 0, 0)
	if got := figures(); got != want {
		t.Fatalf("hours before the packs' start, read as rows:\n%s\nwant\n%s", got, want)
	}
	st.packsSince = time.Unix(0, 0)
	if got := figures(); got == want || got[:2] != "0 " {
		t.Fatalf("hours never packed, read from packs: %s", got)
	}
	for _, k := range []struct {
		kind, a int8
		key     string
	}{{kindCounts, int8(storage.SubSystemTypes), sub}, {kindUsers, int8(storage.PartnerUsers), p}} {
		n, err := st.packHours(ctx, k.kind, k.a, k.key, from, to)
		if err != nil || n != 45 {
			t.Fatalf("PackHours packed %d hours (%v), want 45", n, err)
		}
	}
	if got := figures(); got != want {
		t.Fatalf("after PackHours:\n%s\nwant\n%s", got, want)
	}
}

// packsMatchRows fails unless every hour row of a key in [from, to) has
// its n in its day's pack, and every pack entry a row.
func packsMatchRows(t *testing.T, st *Store, kind, a int8, key string, from, to time.Time) int {
	t.Helper()
	rows := 0
	for _, period := range periods(storage.Hour, false, from, to) {
		want := map[time.Time]int64{}
		iter := st.s.Query("SELECT slot, n FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot >= ?",
			kind, a, key, int8(storage.Hour), period, time.Unix(86400, 0)).Iter()
		var slot time.Time
		var n int64
		for iter.Scan(&slot, &n) {
			want[slot.UTC()] = n
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		got := map[time.Time]int64{}
		iter = st.s.Query("SELECT slot, pack, sealed FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot < ?",
			kind, a, key, int8(storage.Hour), period, time.Unix(86400, 0)).Iter()
		var pack map[int]int64
		var sealed []byte
		y, m := period/100, time.Month(period%100)
		for iter.Scan(&slot, &pack, &sealed) {
			// A read may have sealed the day (seal.go): its entries, the
			// map's over them.
			e, _, err := decodeSealed(sealed, time.Now().Unix())
			if err != nil {
				t.Fatal(err)
			}
			for h := range 24 {
				if e.has&(1<<h) != 0 {
					got[time.Date(y, m, int(slot.UnixMilli()), h, 0, 0, 0, time.UTC)] = e.n[h]
				}
			}
			for h, v := range pack {
				got[time.Date(y, m, int(slot.UnixMilli()), h, 0, 0, 0, time.UTC)] = v
			}
			pack, sealed = nil, nil
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("kind %d, %d: packs\n%v\nrows\n%v", kind, period, got, want)
		}
		rows += len(want)
	}
	return rows
}

// Two folders, PackCountHours/PackUserHours and seals of the ended days'
// packs (seal.go), all at once over the same hours while events arrive:
// every hour row's n stays in its pack, sealed or not (each write of a row
// and its entry is one conditional batch, and a seal is conditional on the
// pack it read), and the figures read from packs are those read from rows
// and counted from the events.
func TestPacksUnderConcurrentWriters(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	from, to := at, at.AddDate(0, 0, 2)
	stop := make(chan struct{})
	var packers sync.WaitGroup
	packs := 0
	var mu sync.Mutex
	for _, pack := range []func() (int, error){
		func() (int, error) { return st.PackCountHours(ctx, storage.SubSystemTypes, sub, from, to) },
		func() (int, error) { return st.PackUserHours(ctx, storage.PartnerUsers, p, from, to) },
	} {
		packers.Add(1)
		go func() {
			defer packers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := pack()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				packs += n
				mu.Unlock()
			}
		}()
	}
	seals := 0
	packers.Add(1)
	go func() {
		defer packers.Done()
		for {
			for _, pt := range []part{
				{kindCounts, int8(storage.SubSystemTypes), sub, storage.Hour, periodOf(storage.Hour, false, from)},
				{kindUsers, int8(storage.PartnerUsers), p, storage.Hour, periodOf(storage.Hour, false, from)},
			} {
				for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
					select {
					case <-stop:
						return
					default:
					}
					if pt.period != periodOf(storage.Hour, false, d) {
						continue // the next month's: another partition
					}
					ok, err := st.sealPack(ctx, pt, packSlot(d))
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						mu.Lock()
						seals++
						mu.Unlock()
					}
				}
			}
		}
	}()
	want := map[time.Time]int64{}
	var folders sync.WaitGroup
	for round := range 8 {
		var evs []event.Event
		for i := range 150 {
			ts := at.Add(time.Duration((round*150+i)*37%(48*60)) * time.Minute)
			evs = append(evs, event.Event{ID: fmt.Sprint("c", round, "-", i), PartnerID: p, SubSystemID: sub, EventType: "view",
				UserID: fmt.Sprint("u", i%90), Timestamp: ts})
			want[ts.Truncate(time.Hour)]++
		}
		if _, err := st.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			folders.Add(1)
			go func() {
				defer folders.Done()
				if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	folders.Wait()
	if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	packers.Wait()
	if packs == 0 || seals == 0 {
		t.Fatalf("%d packs written and %d sealed alongside the folds, want some of each", packs, seals)
	}
	if n := packsMatchRows(t, st, kindCounts, int8(storage.SubSystemTypes), sub, from, to); n != 48 {
		t.Fatalf("%d hour rows of counts, want 48", n)
	}
	packsMatchRows(t, st, kindUsers, int8(storage.PartnerUsers), p, from, to)
	counts, err := st.Counts(ctx, storage.CountsQuery{Rollup: storage.SubSystemTypes, Key: sub, Res: storage.Hour, From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	got := map[time.Time]int64{}
	for _, sl := range counts {
		got[sl.Start] = sl.Total
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hours from packs:\n%v\nwant\n%v", got, want)
	}
}
