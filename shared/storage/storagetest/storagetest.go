// Package storagetest is the conformance suite every storage backend must pass.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Run runs the suite. open returns a fresh, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"PartnerCRUD", testPartnerCRUD},
		{"PartnerCodeUnique", testPartnerCodeUnique},
		{"PartnerListPaging", testPartnerListPaging},
		{"SubSystems", testSubSystems},
		{"APIKeys", testAPIKeys},
		{"VersionedWrites", testVersionedWrites},
		{"ConcurrentTransitions", testConcurrentTransitions},
		{"CodesCaseInsensitive", testCodesCaseInsensitive},
		{"EventsIdempotent", testEventsIdempotent},
		{"EventsConcurrentDuplicates", testEventsConcurrent},
		{"RollupRanges", testRollupRanges},
		{"QuarterHourCounts", testQuarterHourCounts},
		{"RollupResolutions", testRollupResolutions},
		{"RollupsConcurrentWriters", testRollupsConcurrentWriters},
		{"ListEvents", testListEvents},
		{"ListEventsWhileWriting", testListEventsWhileWriting},
		{"ListEventsSubMillisecond", testListEventsSubMillisecond},
		{"RangeEndsMidMinute", testRangeEndsMidMinute},
		{"SameIDOtherTimestamp", testSameIDOtherTimestamp},
		{"SameIDOtherContent", testSameIDOtherContent},
		{"ConcurrentWritersSameBucket", testConcurrentWritersSameBucket},
		{"OverlappingRedeliveries", testOverlappingRedeliveries},
		{"LateEvents", testLateEvents},
		{"PastRetention", testPastRetention},
		{"GroupsBounded", testGroupsBounded},
		{"Ping", func(t *testing.T, s storage.Store) {
			if err := s.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// t0 is a few days back, so events stay within any retention the suite uses.
var t0 = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -5).Add(10 * time.Hour)

func partner(code string) tenant.Partner {
	return tenant.Partner{ID: tenant.NewID(), Code: code, Name: "P " + code, Status: tenant.Active, CreatedAt: t0, UpdatedAt: t0, Version: 1}
}

func nWritten(r storage.WriteResult, err error) (int, error) { return r.Written, err }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testPartnerCRUD(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := partner("acme")
	must(t, s.CreatePartner(ctx, p))
	if err := s.CreatePartner(ctx, p); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second create with the same id: got %v, want ErrExists", err)
	}
	got, err := s.GetPartner(ctx, p.ID)
	must(t, err)
	if got.Code != "acme" || got.Name != p.Name || got.Status != tenant.Active || !got.CreatedAt.Equal(t0) {
		t.Fatalf("got %+v", got)
	}
	byCode, err := s.GetPartnerByCode(ctx, "acme")
	must(t, err)
	if byCode.ID != p.ID {
		t.Fatalf("by code: got %s", byCode.ID)
	}
	if _, err := s.GetPartner(ctx, tenant.NewID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing partner: %v", err)
	}
	if _, err := s.GetPartnerByCode(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing code: %v", err)
	}
	p.Name, p.Status = "Renamed", tenant.Inactive
	must(t, s.UpdatePartner(ctx, p))
	got, _ = s.GetPartner(ctx, p.ID)
	if got.Name != "Renamed" || got.Status != tenant.Inactive || got.Version != 2 {
		t.Fatalf("after update: %+v", got)
	}
	if err := s.UpdatePartner(ctx, partner("ghost")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
}

func testPartnerCodeUnique(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a, b := partner("a"), partner("b")
	must(t, s.CreatePartner(ctx, a))
	must(t, s.CreatePartner(ctx, b))
	if err := s.CreatePartner(ctx, partner("a")); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("duplicate code: %v", err)
	}
	b.Code = "a"
	if err := s.UpdatePartner(ctx, b); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("rename onto a taken code: %v", err)
	}
	// Deleting releases the code; the deleted record stays readable by id.
	a.Status = tenant.Deleted
	must(t, s.UpdatePartner(ctx, a))
	a.Version++
	if _, err := s.GetPartnerByCode(ctx, "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted partner found by code: %v", err)
	}
	must(t, s.CreatePartner(ctx, partner("a")))
	if got, _ := s.GetPartner(ctx, a.ID); got.Status != tenant.Deleted {
		t.Fatalf("deleted partner: %+v", got)
	}
	// Concurrent creates of one code: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.CreatePartner(ctx, partner("race")); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, storage.ErrCodeTaken) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent creates of one code succeeded, want 1", wins)
	}
}

func testPartnerListPaging(t *testing.T, s storage.Store) {
	ctx := context.Background()
	var ids []string
	for i := 0; i < 7; i++ {
		p := partner(fmt.Sprintf("p%d", i))
		p.CreatedAt = t0.Add(time.Duration(i) * time.Second)
		if i == 3 {
			p.Status = tenant.Deleted
		}
		must(t, s.CreatePartner(ctx, p))
		ids = append(ids, p.ID)
	}
	items, total, err := s.ListPartners(ctx, storage.Page{Offset: 0, Limit: 4})
	must(t, err)
	if total != 6 || len(items) != 4 || items[0].ID != ids[0] || items[3].ID != ids[4] {
		t.Fatalf("page 1: total %d, %d items", total, len(items))
	}
	items, _, _ = s.ListPartners(ctx, storage.Page{Offset: 4, Limit: 4})
	if len(items) != 2 || items[1].ID != ids[6] {
		t.Fatalf("page 2: %d items", len(items))
	}
	_, total, _ = s.ListPartners(ctx, storage.Page{Limit: 100, IncludeDeleted: true})
	if total != 7 {
		t.Fatalf("with deleted: total %d", total)
	}
}

func testSubSystems(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p1, p2 := partner("one"), partner("two")
	must(t, s.CreatePartner(ctx, p1))
	must(t, s.CreatePartner(ctx, p2))
	mk := func(p tenant.Partner, code string, at time.Time) tenant.SubSystem {
		return tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: code, Name: code, Status: tenant.Active, CreatedAt: at, UpdatedAt: at, Version: 1}
	}
	web := mk(p1, "web", t0)
	must(t, s.CreateSubSystem(ctx, web))
	must(t, s.CreateSubSystem(ctx, mk(p2, "web", t0))) // codes are per partner
	if err := s.CreateSubSystem(ctx, mk(p1, "web", t0)); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("duplicate code in partner: %v", err)
	}
	ios := mk(p1, "ios", t0.Add(time.Second))
	must(t, s.CreateSubSystem(ctx, ios))
	got, err := s.GetSubSystemByCode(ctx, p1.ID, "web")
	must(t, err)
	if got.ID != web.ID || got.PartnerID != p1.ID {
		t.Fatalf("by code: %+v", got)
	}
	// Rename: the old code is free, the new one is taken.
	web.Code, web.Name = "www", "Website"
	must(t, s.UpdateSubSystem(ctx, web))
	web.Version++
	if _, err := s.GetSubSystemByCode(ctx, p1.ID, "web"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("old code still resolves: %v", err)
	}
	ios.Code = "www"
	if err := s.UpdateSubSystem(ctx, ios); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("rename onto taken code: %v", err)
	}
	ios.Code = "ios"
	ios.Status = tenant.Deleted
	must(t, s.UpdateSubSystem(ctx, ios))
	list, err := s.ListSubSystems(ctx, p1.ID, false)
	must(t, err)
	if len(list) != 1 || list[0].ID != web.ID || list[0].Name != "Website" {
		t.Fatalf("list: %+v", list)
	}
	all, _ := s.ListSubSystems(ctx, p1.ID, true)
	if len(all) != 2 || all[0].ID != web.ID || all[1].ID != ios.ID {
		t.Fatalf("list with deleted: %+v", all)
	}
	byID, err := s.GetSubSystem(ctx, ios.ID)
	must(t, err)
	if byID.Status != tenant.Deleted {
		t.Fatalf("get deleted by id: %+v", byID)
	}
}

func testAPIKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := partner("keys")
	p.RateLimit, p.RequireSignature, p.RetentionDays = 25, true, 30
	must(t, s.CreatePartner(ctx, p))
	if got, _ := s.GetPartner(ctx, p.ID); got.RateLimit != 25 || !got.RequireSignature || got.RetentionDays != 30 {
		t.Fatalf("partner settings round trip: %+v", got)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		id, _, hash := tenant.GenerateKey()
		k := tenant.APIKey{ID: id, PartnerID: p.ID, Name: fmt.Sprint("k", i), Hash: hash, Status: tenant.KeyActive, CreatedAt: t0.Add(time.Duration(i) * time.Minute)}
		must(t, s.CreateAPIKey(ctx, k))
		ids = append(ids, id)
	}
	k, err := s.GetAPIKey(ctx, ids[1])
	must(t, err)
	if k.Name != "k1" || len(k.Hash) != 32 || k.PartnerID != p.ID {
		t.Fatalf("get: %+v", k)
	}
	now := t0.Add(time.Hour)
	k.Status, k.RevokedAt = tenant.KeyRevoked, &now
	must(t, s.UpdateAPIKey(ctx, k))
	list, err := s.ListAPIKeys(ctx, p.ID)
	must(t, err)
	if len(list) != 3 || list[0].ID != ids[0] || list[2].ID != ids[2] || list[1].Status != tenant.KeyRevoked {
		t.Fatalf("list: %+v", list)
	}
	// Every field round-trips; a touch moves only the last-used time, forward.
	full := tenant.APIKey{ID: "fullfullfullf", PartnerID: p.ID, Name: "full", Hash: []byte("0123456789abcdef0123456789abcdef"),
		Status: tenant.KeyActive, Scopes: []string{tenant.ScopeIngest, tenant.ScopeReport}, SubSystemID: tenant.NewID(),
		RateLimit: 50, RequireSignature: true, SigningSecret: []byte("signing-secret"), CreatedAt: t0}
	must(t, s.CreateAPIKey(ctx, full))
	used := t0.Add(2 * time.Hour)
	must(t, s.TouchAPIKey(ctx, full.ID, used))
	must(t, s.TouchAPIKey(ctx, full.ID, used.Add(-time.Hour))) // an older sample is ignored
	got, err := s.GetAPIKey(ctx, full.ID)
	must(t, err)
	if len(got.Scopes) != 2 || got.SubSystemID != full.SubSystemID || got.RateLimit != 50 || !got.RequireSignature ||
		string(got.SigningSecret) != "signing-secret" || got.LastUsedAt == nil || !got.LastUsedAt.Equal(used) {
		t.Fatalf("round trip: %+v", got)
	}
	got.Status, got.RevokedAt = tenant.KeyRevoked, &used
	must(t, s.UpdateAPIKey(ctx, got))
	must(t, s.TouchAPIKey(ctx, full.ID, used.Add(time.Hour)))
	if got, _ = s.GetAPIKey(ctx, full.ID); got.Status != tenant.KeyRevoked || !got.LastUsedAt.Equal(used.Add(time.Hour)) {
		t.Fatalf("a touch undid a revoke, or was lost: %+v", got)
	}
	if err := s.TouchAPIKey(ctx, "nonenonenonen", used); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("touch of a missing key: %v", err)
	}
	if _, err := s.GetAPIKey(ctx, "aaaaaaaaaaaaa"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if got, _ := s.ListAPIKeys(ctx, tenant.NewID()); len(got) != 0 {
		t.Fatalf("other partner's keys: %+v", got)
	}
}

func ev(partnerID, subID, id, typ string, ts time.Time) event.Event {
	return event.Event{ID: id, PartnerID: partnerID, SubSystemID: subID, EventType: typ, Timestamp: ts, ReceivedAt: ts,
		Metadata: []byte(`{"k":"v"}`), IP: "127.0.0.1", UserAgent: "test"}
}

func testEventsIdempotent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	batch := []event.Event{
		ev(p, sub, "e1", "click", t0),
		ev(p, sub, "e2", "view", t0.Add(time.Minute)),
		ev(p, sub, "e1", "click", t0), // duplicate inside one batch
	}
	n, err := nWritten(s.WriteEvents(ctx, batch))
	must(t, err)
	if n != 2 {
		t.Fatalf("written %d, want 2", n)
	}
	// A redelivered batch writes nothing and counts nothing again.
	n, err = nWritten(s.WriteEvents(ctx, batch[:2]))
	must(t, err)
	if n != 0 {
		t.Fatalf("redelivery wrote %d", n)
	}
	// The same id under another partner is another event.
	n, _ = nWritten(s.WriteEvents(ctx, []event.Event{ev(tenant.NewID(), sub, "e1", "click", t0)}))
	if n != 1 {
		t.Fatalf("other partner's e1: written %d", n)
	}
	got, err := s.GetEvent(ctx, p, "e2")
	must(t, err)
	if got.EventType != "view" || !got.Timestamp.Equal(t0.Add(time.Minute)) || string(got.Metadata) != `{"k":"v"}` {
		t.Fatalf("get: %+v", got)
	}
	if _, err := s.GetEvent(ctx, p, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing event: %v", err)
	}
	counts, err := storage.SubSystemCounts(ctx, s, sub, t0, t0.Add(time.Hour))
	must(t, err)
	total := int64(0)
	for _, c := range counts {
		total += c.Count
	}
	if total != 3 { // e1, e2, and the other partner's e1 share the sub-system id here
		t.Fatalf("sub-system total %d, want 3 (%+v)", total, counts)
	}
	pc, _ := storage.PartnerCounts(ctx, s, p, t0, t0.Add(time.Hour))
	if len(pc) != 1 || pc[0].Count != 2 || pc[0].SubSystemID != sub {
		t.Fatalf("partner counts: %+v", pc)
	}
}

func testEventsConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []event.Event
			for i := 0; i < 50; i++ {
				batch = append(batch, ev(p, sub, fmt.Sprint("id", i), "t", t0))
			}
			n, err := nWritten(s.WriteEvents(ctx, batch))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			written += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if written < 50 || written > 200 {
		t.Fatalf("four writers of the same 50 events reported %d new", written)
	}
	pc, _ := storage.PartnerCounts(ctx, s, p, t0, t0.Add(time.Hour))
	if len(pc) != 1 || pc[0].Count != 50 {
		t.Fatalf("partner counts: %+v", pc)
	}
}

func testRollupRanges(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, a, b := tenant.NewID(), tenant.NewID(), tenant.NewID()
	var batch []event.Event
	// 3 days, every hour: a gets 2 "view" + 1 "click", b gets 1 "view".
	for h := 0; h < 72; h++ {
		ts := t0.Add(time.Duration(h)*time.Hour + 30*time.Minute)
		batch = append(batch,
			ev(p, a, fmt.Sprint("a-v1-", h), "view", ts),
			ev(p, a, fmt.Sprint("a-v2-", h), "view", ts.Add(time.Minute)),
			ev(p, a, fmt.Sprint("a-c-", h), "click", ts),
			ev(p, b, fmt.Sprint("b-v-", h), "view", ts))
	}
	n, err := nWritten(s.WriteEvents(ctx, batch))
	must(t, err)
	if n != 288 {
		t.Fatalf("written %d", n)
	}
	sum := func(cs []storage.TypeCount, typ string) (n int64, hours map[time.Time]bool) {
		hours = map[time.Time]bool{}
		for _, c := range cs {
			if typ == "" || c.EventType == typ {
				n += c.Count
				hours[c.Start.Truncate(time.Hour)] = true
			}
		}
		return n, hours
	}
	// A range inside the data: [t0+5h, t0+29h) is 24 hours.
	cs, err := storage.SubSystemCounts(ctx, s, a, t0.Add(5*time.Hour), t0.Add(29*time.Hour))
	must(t, err)
	if n, hrs := sum(cs, ""); n != 72 || len(hrs) != 24 {
		t.Fatalf("a over 24h: %d events in %d hours", n, len(hrs))
	}
	if n, _ := sum(cs, "click"); n != 24 {
		t.Fatalf("a clicks over 24h: %d", n)
	}
	for _, c := range cs {
		if c.Start.Before(t0.Add(5*time.Hour)) || !c.Start.Before(t0.Add(29*time.Hour)) || c.Start.Location() != time.UTC {
			t.Fatalf("quarter %v outside range or not UTC", c.Start)
		}
	}
	// The whole range, and far beyond it: exact totals.
	cs, _ = storage.SubSystemCounts(ctx, s, a, t0.AddDate(-1, 0, 0), t0.AddDate(1, 0, 0))
	if n, _ := sum(cs, ""); n != 216 {
		t.Fatalf("a over two years: %d", n)
	}
	pc, err := storage.PartnerCounts(ctx, s, p, t0, t0.Add(72*time.Hour))
	must(t, err)
	var pa, pb int64
	for _, c := range pc {
		switch c.SubSystemID {
		case a:
			pa += c.Count
		case b:
			pb += c.Count
		}
	}
	if pa != 216 || pb != 72 {
		t.Fatalf("partner counts a=%d b=%d", pa, pb)
	}
	// An empty range.
	if cs, _ := storage.SubSystemCounts(ctx, s, a, t0.Add(-48*time.Hour), t0); len(cs) != 0 {
		t.Fatalf("before the data: %+v", cs)
	}
}

// total is the sub-system's count over all time, and the partner's.
func total(t *testing.T, s storage.Store, p, sub string) (subN, partnerN int64) {
	t.Helper()
	ctx := context.Background()
	from, to := time.Now().AddDate(0, 0, -60), time.Now().AddDate(0, 0, 2)
	cs, err := storage.SubSystemCounts(ctx, s, sub, from, to)
	must(t, err)
	for _, c := range cs {
		subN += c.Count
	}
	pc, err := storage.PartnerCounts(ctx, s, p, from, to)
	must(t, err)
	for _, c := range pc {
		if c.SubSystemID == sub {
			partnerN += c.Count
		}
	}
	return subN, partnerN
}

func wantTotal(t *testing.T, s storage.Store, p, sub string, want int64) {
	t.Helper()
	if a, b := total(t, s, p, sub); a != want || b != want {
		t.Fatalf("counted %d by sub-system and %d by partner, want %d", a, b, want)
	}
}

// The same id again with another timestamp, in another hour and day: a
// duplicate (a client retry that got a new edge timestamp). It is counted
// once, where it was first stored.
func testSameIDOtherTimestamp(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	_, err := s.WriteEvents(ctx, []event.Event{ev(p, sub, "e1", "click", t0)})
	must(t, err)
	for _, d := range []time.Duration{time.Second, 3 * time.Hour, 26 * time.Hour} {
		r, err := s.WriteEvents(ctx, []event.Event{ev(p, sub, "e1", "click", t0.Add(d))})
		must(t, err)
		if r.Written != 0 || len(r.Conflicts) != 0 {
			t.Fatalf("retry %v later: %+v", d, r)
		}
	}
	wantTotal(t, s, p, sub, 1)
	cs, _ := storage.SubSystemCounts(ctx, s, sub, t0, t0.Add(time.Hour))
	if len(cs) != 1 || cs[0].Count != 1 {
		t.Fatalf("the first timestamp's hour: %+v", cs)
	}
	got, err := s.GetEvent(ctx, p, "e1")
	must(t, err)
	if !got.Timestamp.Equal(t0) {
		t.Fatalf("stored at %v, want the first %v", got.Timestamp, t0)
	}
}

// The same id with other content is a conflict: reported, not stored, not
// counted; the first event keeps the id.
func testSameIDOtherContent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	first := ev(p, sub, "e1", "signup", t0)
	other := ev(p, sub, "e1", "purchase", t0)
	r, err := s.WriteEvents(ctx, []event.Event{first, other, ev(p, sub, "e2", "view", t0)})
	must(t, err)
	if r.Written != 2 || len(r.Conflicts) != 1 || r.Conflicts[0] != 1 {
		t.Fatalf("in one batch: %+v", r)
	}
	r, err = s.WriteEvents(ctx, []event.Event{ev(p, sub, "e3", "view", t0), other})
	must(t, err)
	if r.Written != 1 || len(r.Conflicts) != 1 || r.Conflicts[0] != 1 {
		t.Fatalf("in a later batch: %+v", r)
	}
	// Metadata spaced differently is the same content.
	same := first
	same.Metadata = []byte(`{ "k" : "v" }`)
	if r, _ := s.WriteEvents(ctx, []event.Event{same}); len(r.Conflicts) != 0 {
		t.Fatalf("re-spaced metadata taken for a conflict: %+v", r)
	}
	wantTotal(t, s, p, sub, 3)
	got, _ := s.GetEvent(ctx, p, "e1")
	if got.EventType != "signup" {
		t.Fatalf("e1 is now %q", got.EventType)
	}
}

// Writers of different events into the same partitions and buckets at once
// lose nothing.
func testConcurrentWritersSameBucket(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	const writers, per = 6, 120
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < 3; b++ {
				var batch []event.Event
				for i := 0; i < per/3; i++ {
					batch = append(batch, ev(p, sub, fmt.Sprintf("w%d-%d-%d", w, b, i), "t", t0.Add(time.Duration(i)*time.Second)))
				}
				if _, err := s.WriteEvents(ctx, batch); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	wantTotal(t, s, p, sub, writers*per)
}

// Two workers holding overlapping batches (one redelivered while the other
// still writes) store and count the union once.
func testOverlappingRedeliveries(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	mk := func(from, to int) []event.Event {
		var b []event.Event
		for i := from; i < to; i++ {
			b = append(b, ev(p, sub, fmt.Sprint("e", i), fmt.Sprint("t", i%3), t0.Add(time.Duration(i)*time.Minute)))
		}
		return b
	}
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for _, b := range [][]event.Event{mk(0, 100), mk(50, 150), mk(0, 150), mk(120, 200)} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.WriteEvents(ctx, b); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	wantTotal(t, s, p, sub, 200)
}

// Late events (timestamps in long-closed hours, up to the accepted past
// window) are counted in their own hour.
func testLateEvents(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	now := time.Now().UTC()
	_, err := s.WriteEvents(ctx, []event.Event{ev(p, sub, "now", "t", now)})
	must(t, err)
	// Ten past an hour: the minute after it is in the same hour, whenever
	// the test runs (at 59 past, it was not).
	old := now.Add(-29 * 24 * time.Hour).Truncate(time.Hour).Add(10 * time.Minute)
	_, err = s.WriteEvents(ctx, []event.Event{ev(p, sub, "late", "t", old), ev(p, sub, "late2", "t", old.Add(time.Minute))})
	must(t, err)
	cs, err := storage.SubSystemCounts(ctx, s, sub, old.Truncate(time.Hour), old.Truncate(time.Hour).Add(time.Hour))
	must(t, err)
	var n int64
	for _, c := range cs {
		if c.Start.Truncate(time.Hour) != old.Truncate(time.Hour) {
			t.Fatalf("late events counted in %s", c.Start)
		}
		n += c.Count
	}
	if n != 2 {
		t.Fatalf("late events' hour: %+v", cs)
	}
	wantTotal(t, s, p, sub, 3)
}

// An event already past its retention is neither stored nor counted, on
// every backend: its count would outlive it.
func testPastRetention(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	now := time.Now().UTC()
	gone := ev(p, sub, "gone", "t", now.Add(-3*time.Hour))
	gone.Retention = 2 * time.Hour
	kept := ev(p, sub, "kept", "t", now.Add(-time.Hour))
	kept.Retention = 2 * time.Hour
	r, err := s.WriteEvents(ctx, []event.Event{gone, kept})
	must(t, err)
	if r.Written != 1 || len(r.Expired) != 1 || r.Expired[0] != 0 {
		t.Fatalf("%+v", r)
	}
	if _, err := s.GetEvent(ctx, p, "gone"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("an expired event was stored: %v", err)
	}
	wantTotal(t, s, p, sub, 1)
}

// testVersionedWrites: an update is a compare-and-set on the version read.
func testVersionedWrites(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := partner("cas")
	must(t, s.CreatePartner(ctx, p))
	got, err := s.GetPartner(ctx, p.ID)
	must(t, err)
	if got.Version != 1 {
		t.Fatalf("created partner version %d, want 1", got.Version)
	}
	stale := got
	got.Name = "first"
	must(t, s.UpdatePartner(ctx, got))
	stale.Status = tenant.Inactive
	if err := s.UpdatePartner(ctx, stale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("update from a stale read: %v, want ErrConflict", err)
	}
	if got, _ = s.GetPartner(ctx, p.ID); got.Version != 2 || got.Status != tenant.Active || got.Name != "first" {
		t.Fatalf("after a refused stale update: %+v", got)
	}

	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "web", Status: tenant.Active, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateSubSystem(ctx, ss))
	sGot, err := s.GetSubSystem(ctx, ss.ID)
	must(t, err)
	sStale := sGot
	sGot.Status = tenant.Deleted
	must(t, s.UpdateSubSystem(ctx, sGot))
	sStale.Status = tenant.Inactive
	if err := s.UpdateSubSystem(ctx, sStale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("stale sub-system update: %v, want ErrConflict", err)
	}
	if sGot, _ = s.GetSubSystem(ctx, ss.ID); sGot.Status != tenant.Deleted || sGot.Version != 2 {
		t.Fatalf("a stale toggle revived a deleted sub-system: %+v", sGot)
	}

	id, _, hash := tenant.GenerateKey()
	must(t, s.CreateAPIKey(ctx, tenant.APIKey{ID: id, PartnerID: p.ID, Name: "k", Hash: hash, Status: tenant.KeyActive, CreatedAt: t0}))
	k, err := s.GetAPIKey(ctx, id)
	must(t, err)
	kStale := k
	used := t0.Add(time.Minute)
	must(t, s.TouchAPIKey(ctx, id, used)) // a touch is no version change
	now := t0.Add(time.Hour)
	k.Status, k.RevokedAt = tenant.KeyRevoked, &now
	must(t, s.UpdateAPIKey(ctx, k))
	kStale.Name = "renamed"
	if err := s.UpdateAPIKey(ctx, kStale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("stale key update: %v, want ErrConflict", err)
	}
	k, _ = s.GetAPIKey(ctx, id)
	if k.Status != tenant.KeyRevoked || k.Name != "k" || k.Version != 2 || k.LastUsedAt == nil || !k.LastUsedAt.Equal(used) {
		t.Fatalf("a stale update revived a revoked key, or the update lost the last use: %+v", k)
	}
	if err := s.UpdateAPIKey(ctx, tenant.APIKey{ID: "nonenonenonen"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update of a missing key: %v", err)
	}
}

// testConcurrentTransitions: writers that read the same version race; at
// most one wins each version, so a revoke or delete is never overwritten
// by a writer that read the record before it.
func testConcurrentTransitions(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := partner("race-cas")
	must(t, s.CreatePartner(ctx, p))
	id, _, hash := tenant.GenerateKey()
	must(t, s.CreateAPIKey(ctx, tenant.APIKey{ID: id, PartnerID: p.ID, Name: "k", Hash: hash, Status: tenant.KeyActive, CreatedAt: t0}))
	for round := 0; round < 10; round++ {
		k, err := s.GetAPIKey(ctx, id)
		must(t, err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				mine := k
				mine.Name = fmt.Sprint("writer", w)
				if err := s.UpdateAPIKey(ctx, mine); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, storage.ErrConflict) {
					t.Error(err)
				}
			}(w)
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d writers of version %d won, want 1", round, wins, k.Version)
		}
		if got, _ := s.GetAPIKey(ctx, id); got.Version != k.Version+1 {
			t.Fatalf("round %d: version %d, want %d", round, got.Version, k.Version+1)
		}
	}
}

// testCodesCaseInsensitive: codes are unique up to case; a record keeps the
// code as written and is found by any case of it.
func testCodesCaseInsensitive(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := partner("Acme")
	must(t, s.CreatePartner(ctx, a))
	if err := s.CreatePartner(ctx, partner("ACME")); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("a code differing by case only: %v, want ErrCodeTaken", err)
	}
	for _, c := range []string{"Acme", "acme", "ACME"} {
		got, err := s.GetPartnerByCode(ctx, c)
		if err != nil || got.ID != a.ID || got.Code != "Acme" {
			t.Fatalf("by code %q: %+v, %v", c, got, err)
		}
	}
	b := partner("other")
	must(t, s.CreatePartner(ctx, b))
	b.Code = "aCmE"
	if err := s.UpdatePartner(ctx, b); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("rename onto a code differing by case: %v", err)
	}
	a.Code = "ACME" // a record may change the case of its own code
	must(t, s.UpdatePartner(ctx, a))
	a.Version++
	if got, err := s.GetPartnerByCode(ctx, "acme"); err != nil || got.Code != "ACME" {
		t.Fatalf("after a case change: %+v, %v", got, err)
	}
	a.Status = tenant.Deleted
	must(t, s.UpdatePartner(ctx, a))
	b.Code = "acme" // released by the delete
	must(t, s.UpdatePartner(ctx, b))

	mk := func(code string) tenant.SubSystem {
		return tenant.SubSystem{ID: tenant.NewID(), PartnerID: b.ID, Code: code, Name: code, Status: tenant.Active, CreatedAt: t0, UpdatedAt: t0, Version: 1}
	}
	must(t, s.CreateSubSystem(ctx, mk("Web")))
	if err := s.CreateSubSystem(ctx, mk("WEB")); !errors.Is(err, storage.ErrCodeTaken) {
		t.Fatalf("sub-system code differing by case only: %v", err)
	}
	if got, err := s.GetSubSystemByCode(ctx, b.ID, "web"); err != nil || got.Code != "Web" {
		t.Fatalf("sub-system by code in another case: %+v, %v", got, err)
	}
}

// testQuarterHourCounts: counts keep quarter hours apart, so a report can
// cut days and hours in a zone offset by 30 or 45 minutes; a range asks
// for the quarters that start in it.
func testQuarterHourCounts(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, a := tenant.NewID(), tenant.NewID()
	var batch []event.Event
	for i, m := range []int{0, 5, 14, 15, 29, 30, 44, 45, 59, 60} { // minutes past t0
		batch = append(batch, ev(p, a, fmt.Sprint("q-", i), "tick", t0.Add(time.Duration(m)*time.Minute+time.Second)))
	}
	n, err := nWritten(s.WriteEvents(ctx, batch))
	must(t, err)
	if n != len(batch) {
		t.Fatalf("written %d", n)
	}
	want := map[time.Time]int64{t0: 3, t0.Add(15 * time.Minute): 2, t0.Add(30 * time.Minute): 2, t0.Add(45 * time.Minute): 2, t0.Add(time.Hour): 1}
	cs, err := storage.SubSystemCounts(ctx, s, a, t0, t0.Add(2*time.Hour))
	must(t, err)
	got := map[time.Time]int64{}
	for _, c := range cs {
		got[c.Start] += c.Count
	}
	ps, err := storage.PartnerCounts(ctx, s, p, t0, t0.Add(2*time.Hour))
	must(t, err)
	gotP := map[time.Time]int64{}
	for _, c := range ps {
		gotP[c.Start] += c.Count
	}
	for q, n := range want {
		if got[q] != n || gotP[q] != n {
			t.Fatalf("quarter %s: sub-system %d, partner %d, want %d (all: %v)", q.Format("15:04"), got[q], gotP[q], n, got)
		}
	}
	if len(got) != len(want) || len(gotP) != len(want) {
		t.Fatalf("%d and %d quarters, want %d", len(got), len(gotP), len(want))
	}
	// [t0+15m, t0+45m) is two quarters; a bound inside a quarter starts at it.
	for _, r := range [][2]time.Time{{t0.Add(15 * time.Minute), t0.Add(45 * time.Minute)}, {t0.Add(20 * time.Minute), t0.Add(45 * time.Minute)}} {
		cs, err := storage.SubSystemCounts(ctx, s, a, r[0], r[1])
		must(t, err)
		var sum int64
		for _, c := range cs {
			if c.Start.Before(t0.Add(15*time.Minute)) || !c.Start.Before(t0.Add(45*time.Minute)) {
				t.Fatalf("range %s–%s returned quarter %s", r[0].Format("15:04"), r[1].Format("15:04"), c.Start.Format("15:04"))
			}
			sum += c.Count
		}
		if sum != 4 {
			t.Fatalf("range %s–%s counted %d, want 4", r[0].Format("15:04"), r[1].Format("15:04"), sum)
		}
	}
}
