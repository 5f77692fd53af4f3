package reporter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/tenant"
)

// TestCachedAtSplice: the cache's bytes are those of the stamped answer,
// for both reports and a page of events, so a hit decodes to the answer with cachedAt set and
// nothing else changed.
func TestCachedAtSplice(t *testing.T) {
	at := time.Date(2026, 11, 26, 18, 30, 1, 123456789, time.FixedZone("x", 3600))
	n := int64(3)
	done := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	sub := &report.SubSystemReport{SubSystemID: "s", TotalEvents: 3, EventsByType: map[string]int64{"a<b": 3}, UniqueUsers: &n,
		TimeSeries: []report.Point{{Timestamp: done, Count: 3}}, Freshness: report.Freshness{DataCompleteUntil: &done}}
	partner := &report.PartnerReport{PartnerID: "p", EventsByType: map[string]int64{}}
	page := &report.EventsPage{PartnerID: "p", Limit: 2, NextCursor: "c<", DataCompleteUntil: &done,
		Events: []event.Event{{ID: "e", EventType: "a<b", Timestamp: done, Metadata: json.RawMessage(`{"}":"{<"}`)}}}
	for _, c := range []struct {
		v any
		f **time.Time
	}{{sub, &sub.Freshness.CachedAt}, {partner, &partner.Freshness.CachedAt}, {page, &page.CachedAt}} {
		v := c.v
		fresh, err := encodeAnswer(v)
		if err != nil {
			t.Fatal(err)
		}
		utc := at.UTC()
		*c.f = &utc
		want, _ := encodeAnswer(v)
		var back map[string]any
		if err := json.Unmarshal(want, &back); err != nil || back["cachedAt"] == nil {
			t.Fatalf("stamped answer %s: %v", want, err)
		}
		if got := withCachedAt(fresh, at); !bytes.Equal(got, want) {
			t.Errorf("spliced\n%s\nwant\n%s", got, want)
		}
	}
}

// TestEncodeAnswerAsEncodingJSON: an answer whose series is spliced in is
// byte for byte what encoding/json writes, with hostile names and types
// (the series' field name inside strings, as a type, with quotes and
// backslashes), an empty series and none.
func TestEncodeAnswerAsEncodingJSON(t *testing.T) {
	n := int64(7)
	at := time.Date(2026, 3, 29, 1, 30, 0, 0, time.FixedZone("+0530", 19800))
	series := report.Series{{Timestamp: at, Count: 3, UniqueUsers: &n}, {Timestamp: at.Add(time.Hour), Count: 0}}
	hostile := []string{`,"timeSeries":null`, `"timeSeries":null`, `\",\"timeSeries\":null`, "timeSeries", `a\`, `<&>`, "\u2028"}
	var cases []any
	for _, ts := range []report.Series{series, {}, nil} {
		for _, h := range hostile {
			types := map[string]int64{h: 1, "timeSeries": 2, `"` + h: 3}
			cases = append(cases,
				&report.SubSystemReport{SubSystemID: h, SubSystemName: h, SubSystemCode: h, EventType: h, EventsByType: types, TZ: h, TimeSeries: ts,
					Freshness: report.Freshness{DataCompleteUntil: &at}},
				&report.PartnerReport{PartnerID: h, PartnerName: h, EventType: h, EventsByType: types, TimeSeries: ts,
					TopEventTypes: []report.TypeCount{{EventType: h, EventCount: 1}}, TopSubSystems: []report.SubSystemCount{{SubSystemName: h}}})
		}
	}
	for _, v := range cases {
		got, err := encodeAnswer(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := encodeJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("spliced\n%s\nencoding/json\n%s", got, want)
		}
	}
	// The report itself is left as it was.
	r := cases[0].(*report.SubSystemReport)
	if len(r.TimeSeries) != 2 {
		t.Fatalf("the report's series after encoding: %v", r.TimeSeries)
	}
}

// poisoned answers garbage for every key until the key is set; gen is its
// generation of every id.
type poisoned struct {
	set map[string][]byte
	gen int64
}

func (p *poisoned) GetGenerational(_ context.Context, _, key string) (int64, []byte, bool, error) {
	if b, ok := p.set[key]; ok {
		return p.gen, b, true, nil
	}
	return p.gen, []byte(`{"partnerId":"x",`), true, nil
}

func (p *poisoned) SetBytes(_ context.Context, key string, b []byte, _ time.Duration) error {
	p.set[key] = b
	return nil
}

// An entry opens only as it was sealed: a changed byte, a value without
// the sum (an older version's, a foreign one) are not answers.
func TestCacheEntrySeal(t *testing.T) {
	answer := []byte(`{"partnerId":"p","totalEvents":3}`)
	e := sealEntry(-7, answer)
	if gen, got, ok := openEntry(e); !ok || gen != -7 || !bytes.Equal(got, answer) {
		t.Fatalf("sealed entry opens as %d %q, %v", gen, got, ok)
	}
	for i := range e {
		bad := bytes.Clone(e)
		bad[i] ^= 0x20
		if _, _, ok := openEntry(bad); ok {
			t.Fatalf("byte %d changed: still opens", i)
		}
	}
	old := append(binary.BigEndian.AppendUint32(nil, crc32.Checksum(answer, castagnoli)), answer...) // before generations
	// An entry of the format before generations whose answer has a '{'
	// where this format's starts: its sum holds over the same bytes, so
	// only the version the sum is seeded with tells it apart.
	nested := []byte(`{"x":[1,{"y":2}]}`)
	oldNested := append(binary.BigEndian.AppendUint32(nil, crc32.Checksum(nested, castagnoli)), nested...)
	for _, bad := range [][]byte{nil, {}, answer, old, oldNested, e[:len(e)-1], sealEntry(1, nil), sealEntry(1, []byte("[1]"))} {
		if _, _, ok := openEntry(bad); ok {
			t.Errorf("%q opens", bad)
		}
	}
}

// An entry that is not an answer is never sent: the report is computed
// again and the entry overwritten.
func TestDamagedCacheEntryIsAMiss(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	cache := &poisoned{set: map[string][]byte{}}
	s := New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()}
	b, err := s.PartnerReportJSON(ctx, q)
	var rep report.PartnerReport
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.PartnerID != p.ID || rep.CachedAt != nil {
		t.Fatalf("over a damaged entry: %s, %v; want the report computed", b, err)
	}
	if len(cache.set) != 1 {
		t.Fatalf("the damaged entry was not overwritten: %d set", len(cache.set))
	}
	if b, err := s.PartnerReportJSON(ctx, q); err != nil || json.Unmarshal(b, &rep) != nil || rep.CachedAt == nil {
		t.Fatalf("the next answer: %s, %v; want it from the cache", b, err)
	}
}

// An entry computed at another generation is a miss: a late event bumped
// it, so the answer is computed again and stored at the new generation.
func TestStaleGenerationIsAMiss(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	cache := &poisoned{set: map[string][]byte{}}
	s := New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()}
	answer := func() *report.PartnerReport {
		t.Helper()
		b, err := s.PartnerReportJSON(ctx, q)
		var rep report.PartnerReport
		if err != nil || json.Unmarshal(b, &rep) != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		return &rep
	}
	if answer().CachedAt != nil || answer().CachedAt == nil {
		t.Fatal("not cached at generation 0")
	}
	cache.gen = 1
	if r := answer(); r.CachedAt != nil {
		t.Fatal("an answer of generation 0 was sent at generation 1")
	}
	if r := answer(); r.CachedAt == nil {
		t.Fatal("not cached again at generation 1")
	}
}

// failing is a cache whose reads fail (Redis down): reports are computed,
// and nothing is stored, since the generation to seal it with is unknown.
type failing struct{ sets int }

func (f *failing) GetGenerational(context.Context, string, string) (int64, []byte, bool, error) {
	return 0, nil, false, errors.New("redis: connection refused")
}

func (f *failing) SetBytes(context.Context, string, []byte, time.Duration) error {
	f.sets++
	return nil
}

func TestFailingCacheStoresNothing(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	cache := &failing{}
	s := New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	for range 2 {
		b, err := s.PartnerReportJSON(ctx, report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()})
		var rep report.PartnerReport
		if err != nil || json.Unmarshal(b, &rep) != nil || rep.PartnerID != p.ID || rep.CachedAt != nil {
			t.Fatalf("with the cache failing: %s, %v; want the report computed", b, err)
		}
	}
	if cache.sets != 0 {
		t.Fatalf("%d entries stored under a generation never read", cache.sets)
	}
}

// bumpWhileComputing stores a late event and bumps the generation while a
// report is being computed, after its counts were read (the top list's
// names are read last).
type bumpWhileComputing struct {
	*pebblestore.Store
	armed func()
}

func (b *bumpWhileComputing) ListSubSystems(ctx context.Context, partnerID string, includeDeleted bool) ([]tenant.SubSystem, error) {
	if b.armed != nil {
		b.armed()
		b.armed = nil
	}
	return b.Store.ListSubSystems(ctx, partnerID, includeDeleted)
}

// A late event stored and bumped while an answer is computed without it:
// that answer is cached at the generation read before computing, so the
// next request misses it and counts the event. On the all-in-one's cache.
func TestBumpWhileComputing(t *testing.T) {
	ctx := context.Background()
	pb, p, ss := storeWithSubSystem(t)
	at := time.Now().UTC().Add(-3 * time.Hour)
	write := func(id string) {
		t.Helper()
		if _, err := pb.WriteEvents(ctx, []event.Event{{ID: id, PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: at}}); err != nil {
			t.Fatal(err)
		}
	}
	write("e1")
	cache := rcache.NewLocal(1 << 20)
	store := &bumpWhileComputing{Store: pb}
	s := New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour)}
	answer := func() *report.PartnerReport {
		t.Helper()
		r, err := s.PartnerReport(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	store.armed = func() {
		write("late")
		if err := cache.Bump(ctx, p.ID, ss.ID); err != nil {
			t.Fatal(err)
		}
	}
	if r := answer(); r.TotalEvents != 1 || r.CachedAt != nil {
		t.Fatalf("computed while the late event came: %d events, cachedAt %v", r.TotalEvents, r.CachedAt)
	}
	if r := answer(); r.TotalEvents != 2 || r.CachedAt != nil {
		t.Fatalf("the next answer: %d events, cachedAt %v; want it computed again with the late event", r.TotalEvents, r.CachedAt)
	}
	if r := answer(); r.TotalEvents != 2 || r.CachedAt == nil {
		t.Fatalf("then: %d events, cachedAt %v; want it cached", r.TotalEvents, r.CachedAt)
	}
	// And a bump with nothing computing: the cached answer is not sent.
	write("later")
	cache.Bump(ctx, p.ID)
	if r := answer(); r.TotalEvents != 3 || r.CachedAt != nil {
		t.Fatalf("after a bump: %d events, cachedAt %v", r.TotalEvents, r.CachedAt)
	}
}

// ttlCache records the TTL each entry is stored with.
type ttlCache struct {
	*rcache.Local
	ttls map[string]time.Duration
}

func (c *ttlCache) SetBytes(ctx context.Context, key string, b []byte, ttl time.Duration) error {
	c.ttls[key] = ttl
	return c.Local.SetBytes(ctx, key, b, ttl)
}

// clockDuringList moves the reporter's clock while a page is listed.
type clockDuringList struct {
	*pebblestore.Store
	during func()
}

func (c *clockDuringList) ListEvents(ctx context.Context, q storage.EventsQuery) ([]event.Event, error) {
	if c.during != nil {
		c.during()
	}
	return c.Store.ListEvents(ctx, q)
}

// TestKeptAsOfTheReading: how long an answer is kept is judged when its
// generation is read, before it is computed. A range still open then (it
// ends within the last hour) is kept briefly even if it has closed by the
// time the answer is stored: an event stored meanwhile was not late to the
// workers, so nothing was bumped for it.
func TestKeptAsOfTheReading(t *testing.T) {
	ctx := context.Background()
	pb, p, ss := storeWithSubSystem(t)
	now := time.Now().UTC()
	to := now.Add(-time.Hour + time.Minute) // open for one more minute
	if _, err := pb.WriteEvents(ctx, []event.Event{{ID: "e", PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: to.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	cache := &ttlCache{Local: rcache.NewLocal(1 << 20), ttls: map[string]time.Duration{}}
	store := &clockDuringList{Store: pb}
	s := New(store, zerolog.Nop()).WithCache(cache, 15*time.Second)
	clock := now
	s.now = func() time.Time { return clock }
	store.during = func() { clock = clock.Add(2 * time.Minute) } // closed by the time it is stored
	if _, err := s.EventsPage(ctx, report.EventsQuery{PartnerID: p.ID, From: to.Add(-time.Hour), To: to}); err != nil {
		t.Fatal(err)
	}
	if len(cache.ttls) != 1 {
		t.Fatalf("entries stored: %v", cache.ttls)
	}
	for key, ttl := range cache.ttls {
		if ttl != 15*time.Second {
			t.Fatalf("%s kept for %v, want the open range's 15s", key, ttl)
		}
	}
}

// TestForgedCursors: a cursor is the client's to rewrite. One whose
// position is outside its own range (no page of the listing ends there) is
// refused, so it can take no other page's cache entry (a time 2^64 ns
// away once did); one that names its range in another zone is answered
// as the range in UTC, the bytes a computed page has.
func TestForgedCursors(t *testing.T) {
	ctx := context.Background()
	pb, p, ss := storeWithSubSystem(t)
	at := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	var evs []event.Event
	for i := range 5 {
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: at.Add(time.Duration(i) * time.Minute)})
	}
	if _, err := pb.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	s := New(pb, zerolog.Nop()).WithCache(rcache.NewLocal(1<<20), time.Minute)
	q := report.EventsQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour), Limit: 2}
	first, err := s.EventsPage(ctx, q)
	if err != nil || first.NextCursor == "" {
		t.Fatalf("%+v %v", first, err)
	}
	var c cursor
	raw, _ := base64.RawURLEncoding.DecodeString(first.NextCursor)
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	forge := func(f func(*cursor)) string {
		d := c
		f(&d)
		b, _ := json.Marshal(d)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	quarter := time.Duration(1 << 62) // four of them: 2^64 ns, where UnixNano wraps
	for name, cur := range map[string]string{
		"2^64 ns later":      forge(func(d *cursor) { d.T = d.T.Add(quarter).Add(quarter).Add(quarter).Add(quarter) }),
		"2^64 ns earlier":    forge(func(d *cursor) { d.T = d.T.Add(-quarter).Add(-quarter).Add(-quarter).Add(-quarter) }),
		"before its range":   forge(func(d *cursor) { d.T = d.From.Add(-time.Nanosecond) }),
		"at its range's end": forge(func(d *cursor) { d.T = d.To }),
	} {
		next := q
		next.Cursor = cur
		var ae *apierr.Error
		if _, err := s.EventsPage(ctx, next); !errors.As(err, &ae) || ae.Code != apierr.InvalidParameter || len(ae.Fields) != 1 || ae.Fields[0].Field != "cursor" {
			t.Errorf("%s: %v, want the cursor refused", name, err)
		}
	}
	// A cursor alone (the range is its own) whose range was rewritten past
	// the longest: the cursor is blamed, not a from the request never sent.
	alone := report.EventsQuery{PartnerID: p.ID, Limit: 2, Cursor: forge(func(d *cursor) { d.From = time.Unix(0, 0).UTC() })}
	var ae *apierr.Error
	if _, err := s.EventsPage(ctx, alone); !errors.As(err, &ae) || len(ae.Fields) != 1 || ae.Fields[0].Field != "cursor" {
		t.Errorf("a cursor's range rewritten to start in 1970: %v, want the cursor refused", err)
	}
	// The same instants in +07:00: the page names its range in UTC, and
	// is the same page however the cursor wrote it, computed or cached.
	zone := time.FixedZone("+07", 7*3600)
	in07 := q
	in07.Cursor = forge(func(d *cursor) { d.From, d.To, d.T = d.From.In(zone), d.To.In(zone), d.T.In(zone) })
	real := q
	real.Cursor = first.NextCursor
	a, err := s.EventsPageJSON(ctx, in07)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.EventsPageJSON(ctx, real)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := New(pb, zerolog.Nop()).EventsPageJSON(ctx, real)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(a, []byte("+07:00")) || !bytes.HasPrefix(b, a[:len(a)-1]) || !bytes.Equal(a, fresh) {
		t.Fatalf("in +07:00:\n%s\nthe cursor as sent, from the cache:\n%s\ncomputed:\n%s", a, b, fresh)
	}
}

// TestLargePagesNotKept: a page over maxKeptPage bytes is sent, not kept;
// a smaller one of the same listing is kept.
func TestLargePagesNotKept(t *testing.T) {
	ctx := context.Background()
	pb, p, ss := storeWithSubSystem(t)
	at := time.Now().UTC().Add(-3 * time.Hour)
	writeSpaced(t, pb, p, ss, 200, at, json.RawMessage(`{"blob":"`+strings.Repeat("x", 1000)+`"}`))
	s := New(pb, zerolog.Nop()).WithCache(rcache.NewLocal(4<<20), time.Minute)
	for _, c := range []struct {
		limit int
		kept  bool
	}{{200, false}, {20, true}} {
		q := report.EventsQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour), Limit: c.limit}
		b, err := s.EventsPageJSON(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if (len(b) > maxKeptPage) == c.kept {
			t.Fatalf("limit %d: %d bytes; the test needs one page over %d and one under", c.limit, len(b), maxKeptPage)
		}
		again, err := s.EventsPage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if (again.CachedAt != nil) != c.kept {
			t.Fatalf("limit %d (%d bytes): cachedAt %v, want kept %v", c.limit, len(b), again.CachedAt, c.kept)
		}
	}
}

// TestPagesFitOneReply: a page is one reply on the bus, so it holds the
// events that fit maxPageBytes, at least one, and nextCursor continues
// after them: every event of the listing once, in order, page by page.
func TestPagesFitOneReply(t *testing.T) {
	ctx := context.Background()
	pb, p, ss := storeWithSubSystem(t)
	at := time.Now().UTC().Add(-3 * time.Hour)
	big := json.RawMessage(`{"html":"` + strings.Repeat("<b>", 10<<10) + `"}`) // 30 KiB, escaped twice over by encoding/json
	var want []string
	var evs []event.Event
	for i := range 60 {
		evs = append(evs, event.Event{ID: fmt.Sprintf("e%02d", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view",
			Timestamp: at.Add(time.Duration(i) * time.Second), Metadata: big})
		want = append([]string{fmt.Sprintf("e%02d", i)}, want...)
	}
	if _, err := pb.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	s := New(pb, zerolog.Nop())
	q := report.EventsQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour), Limit: 1000}
	var got []string
	pages := 0
	for {
		b, err := s.EventsPageJSON(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var pg report.EventsPage
		if err := json.Unmarshal(b, &pg); err != nil {
			t.Fatal(err)
		}
		if len(b) > maxPageBytes+4<<10 || len(pg.Events) == 0 {
			t.Fatalf("page %d: %d bytes, %d events", pages, len(b), len(pg.Events))
		}
		for _, e := range pg.Events {
			got = append(got, e.ID)
		}
		pages++
		if pg.NextCursor == "" {
			break
		}
		if pages > 60 {
			t.Fatal("no end")
		}
		q.Cursor = pg.NextCursor
	}
	if pages < 2 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d pages listed %v\nwant %v", pages, got, want)
	}
	// One event larger than the bound on its own is still a page.
	if n := fitting([]event.Event{{ID: "x", Metadata: json.RawMessage(`"` + strings.Repeat("y", maxPageBytes) + `"`)}}, maxPageBytes); n != 1 {
		t.Fatalf("a lone large event: %d", n)
	}
}

// storeWithSubSystem is storeWithPartner with a sub-system of the partner.
func storeWithSubSystem(t *testing.T) (*pebblestore.Store, tenant.Partner, tenant.SubSystem) {
	t.Helper()
	pb, p := storeWithPartner(t)
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
	if err := pb.CreateSubSystem(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
	return pb, p, ss
}

// TestPagesFitASmallerBus: on a bus whose largest message is below 1 MiB
// (max_payload set to 256 KiB), pages are cut to fit it, and a page sent
// over it arrives.
func TestPagesFitASmallerBus(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, MaxPayload: 256 << 10, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	pb, p, ss := storeWithSubSystem(t)
	s := New(pb, zerolog.Nop())
	if got := s.pageBytes(); got != maxPageBytes {
		t.Fatalf("without a bus: %d, want %d", got, maxPageBytes)
	}
	s.nc = nc
	if got, want := s.pageBytes(), 256<<10-pageMargin; got != want {
		t.Fatalf("on a bus of 256 KiB messages: %d, want %d", got, want)
	}
	at := time.Now().UTC().Add(-3 * time.Hour)
	writeSpaced(t, pb, p, ss, 40, at, json.RawMessage(`{"blob":"`+strings.Repeat("x", 20<<10)+`"}`))
	b, err := s.EventsPageJSON(ctx, report.EventsQuery{PartnerID: p.ID, From: at.Add(-time.Hour), To: at.Add(time.Hour), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("page")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("page", b); err != nil {
		t.Fatalf("a page of %d bytes on a bus of %d: %v", len(b), nc.MaxPayload(), err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// writeSpaced stores n events of ss, "e000" on, a second apart from at,
// each with meta.
func writeSpaced(t *testing.T, pb *pebblestore.Store, p tenant.Partner, ss tenant.SubSystem, n int, at time.Time, meta json.RawMessage) {
	t.Helper()
	evs := make([]event.Event, 0, n)
	for i := range n {
		evs = append(evs, event.Event{ID: fmt.Sprintf("e%03d", i), PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view",
			Timestamp: at.Add(time.Duration(i) * time.Second), Metadata: meta})
	}
	if _, err := pb.WriteEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}
