package storagetest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// listing is the expected order: timestamp descending, then id ascending.
func listing(evs []event.Event, match func(*event.Event) bool) []string {
	var sel []event.Event
	for i := range evs {
		if match(&evs[i]) {
			sel = append(sel, evs[i])
		}
	}
	sort.Slice(sel, func(i, j int) bool {
		if !sel[i].Timestamp.Equal(sel[j].Timestamp) {
			return sel[i].Timestamp.After(sel[j].Timestamp)
		}
		return sel[i].ID < sel[j].ID
	})
	ids := make([]string, len(sel))
	for i := range sel {
		ids[i] = sel[i].ID
	}
	return ids
}

// pages lists q to the end, limit at a time, each page after the last.
func pages(t *testing.T, s storage.Store, q storage.EventsQuery, between func(page int)) []string {
	t.Helper()
	var ids []string
	for page := 0; ; page++ {
		evs, err := s.ListEvents(context.Background(), q)
		must(t, err)
		if len(evs) > q.Limit {
			t.Fatalf("page of %d, limit %d", len(evs), q.Limit)
		}
		for _, e := range evs {
			ids = append(ids, e.ID)
		}
		if len(evs) < q.Limit {
			return ids
		}
		last := evs[len(evs)-1]
		q.After = &storage.EventPos{Timestamp: last.Timestamp, ID: last.ID}
		if between != nil {
			between(page)
		}
		if page > 1000 {
			t.Fatal("listing does not end")
		}
	}
}

// A partner's events are listed newest first, then by id, each once, with
// every filter and range, page by page; stored duplicates and a refused
// reuse of an id are not listed twice; bodies come back whole.
func testListEvents(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, other := tenant.NewID(), tenant.NewID()
	subs := []string{tenant.NewID(), tenant.NewID()}
	base := t0.Truncate(time.Hour)
	var evs []event.Event
	for i := range 240 {
		// Several events share a timestamp; minutes, hours and days vary.
		ts := base.Add(time.Duration(i/3)*17*time.Minute + time.Duration(i%2)*time.Second)
		e := ev(p, subs[i%2], fmt.Sprintf("l%03d", (i*37)%240), []string{"view", "click", "buy"}[i%3], ts)
		e.UserID = fmt.Sprint("u", i)
		if i%7 == 0 {
			// Text that looks like another type and sub-system, in metadata.
			e.Metadata = []byte(fmt.Sprintf(`{"eventType":"click","subSystemId":%q}`, subs[(i+1)%2]))
		}
		evs = append(evs, e)
	}
	for i := 0; i < len(evs); i += 60 {
		for range 2 {
			_, err := s.WriteEvents(ctx, evs[i:i+60])
			must(t, err)
		}
	}
	reuse := evs[10]
	reuse.EventType = "changed"
	r, err := s.WriteEvents(ctx, []event.Event{reuse, ev(other, subs[0], "l001", "view", base)}) // another partner's event
	must(t, err)
	if len(r.Conflicts) != 1 {
		t.Fatalf("reuse: %+v", r)
	}
	from, to := base.Add(-time.Hour), base.Add(72*time.Hour)
	for _, c := range []struct {
		sub, typ string
		from, to time.Time
	}{
		{"", "", from, to},
		{subs[1], "", from, to},
		{"", "click", from, to},
		{subs[0], "view", from, to},
		{"", "", base.Add(3*time.Hour + 30*time.Second), base.Add(26*time.Hour + 17*time.Minute)}, // cut inside minutes
		{"", "", to, to.Add(time.Hour)}, // nothing there
	} {
		want := listing(evs, func(e *event.Event) bool {
			return (c.sub == "" || e.SubSystemID == c.sub) && (c.typ == "" || e.EventType == c.typ) && !e.Timestamp.Before(c.from) && e.Timestamp.Before(c.to)
		})
		for _, limit := range []int{1, 7, storage.MaxEventsLimit} {
			got := pages(t, s, storage.EventsQuery{PartnerID: p, From: c.from, To: c.to, SubSystemID: c.sub, EventType: c.typ, Limit: limit}, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("%+v limit %d:\n got %v\nwant %v", c, limit, got, want)
			}
		}
	}
	// Bodies come back as written.
	page, err := s.ListEvents(ctx, storage.EventsQuery{PartnerID: p, From: from, To: to, Limit: 1000})
	must(t, err)
	byID := map[string]event.Event{}
	for _, e := range evs {
		byID[e.ID] = e
	}
	for _, e := range page {
		w := byID[e.ID]
		if !e.Timestamp.Equal(w.Timestamp) || e.EventType != w.EventType || e.UserID != w.UserID || string(e.Metadata) != string(w.Metadata) || e.SubSystemID != w.SubSystemID {
			t.Fatalf("listed %+v, stored %+v", e, w)
		}
	}
	for _, bad := range []int{0, -1, storage.MaxEventsLimit + 1} {
		if _, err := s.ListEvents(ctx, storage.EventsQuery{PartnerID: p, From: from, To: to, Limit: bad}); err == nil {
			t.Fatalf("limit %d accepted", bad)
		}
	}
}

// Events apart by less than a millisecond (Cassandra orders its rows by
// milliseconds) are listed in the order of their own timestamps, then ids,
// with every page size and cursor: a page decodes only the events it may
// take, and must not take the wrong ones of a millisecond.
func testListEventsSubMillisecond(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	ms := t0.Add(20*time.Minute + 30*time.Second)
	var evs []event.Event
	for i, off := range []time.Duration{
		900 * time.Microsecond, 100 * time.Microsecond, 500 * time.Microsecond, 100 * time.Microsecond, // one millisecond; ids against the order
		time.Millisecond, time.Millisecond + time.Nanosecond, 999 * time.Microsecond, // its next and its last
		-time.Nanosecond, 0, 59*time.Second + 999*time.Millisecond, // the one before; the minute's last
	} {
		e := ev(p, sub, fmt.Sprintf("s%02d", 20-i), []string{"view", "click"}[i%2], ms.Add(off))
		evs = append(evs, e)
	}
	_, err := s.WriteEvents(ctx, evs)
	must(t, err)
	for _, c := range []struct {
		typ      string
		from, to time.Time
	}{
		{"", ms.Add(-time.Minute), ms.Add(time.Minute)},
		{"click", ms.Add(-time.Minute), ms.Add(time.Minute)},
		{"", ms.Add(100 * time.Microsecond), ms.Add(time.Millisecond)}, // bounds inside the millisecond
		{"", ms.Add(500 * time.Microsecond), ms.Add(time.Millisecond + time.Nanosecond)},
	} {
		want := listing(evs, func(e *event.Event) bool {
			return (c.typ == "" || e.EventType == c.typ) && !e.Timestamp.Before(c.from) && e.Timestamp.Before(c.to)
		})
		for limit := 1; limit <= len(evs); limit++ {
			got := pages(t, s, storage.EventsQuery{PartnerID: p, From: c.from, To: c.to, EventType: c.typ, Limit: limit}, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("%+v limit %d:\n got %v\nwant %v", c, limit, got, want)
			}
		}
	}
}

// Paging stays exact while events arrive: new events newer than the first
// page, late ones among the pages still to come and ones in the very
// minute of the cursor. Every event stored before the listing began is
// listed once, in order; nothing is listed twice.
func testListEventsWhileWriting(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	base := t0.Truncate(time.Hour)
	var evs []event.Event
	for i := range 120 {
		evs = append(evs, ev(p, sub, fmt.Sprintf("w%03d", i), "view", base.Add(time.Duration(i)*7*time.Minute+time.Duration(i%3)*time.Second)))
	}
	_, err := s.WriteEvents(ctx, evs)
	must(t, err)
	want := listing(evs, func(*event.Event) bool { return true })
	n := 0
	q := storage.EventsQuery{PartnerID: p, From: base.Add(-time.Hour), To: base.Add(48 * time.Hour), Limit: 10}
	got := pages(t, s, q, func(page int) {
		n++
		var more []event.Event
		newest := base.Add(20*time.Hour + time.Duration(n)*time.Minute)
		late := base.Add(time.Duration(120-page*10) * 7 * time.Minute / 2)
		more = append(more, ev(p, sub, fmt.Sprint("new", n), "view", newest), ev(p, sub, fmt.Sprint("late", n), "view", late))
		_, err := s.WriteEvents(ctx, more)
		must(t, err)
	})
	seen := map[string]bool{}
	var originals []string
	for _, id := range got {
		if seen[id] {
			t.Fatalf("%s listed twice: %v", id, got)
		}
		seen[id] = true
		if id[0] == 'w' {
			originals = append(originals, id)
		}
		if len(id) > 3 && id[:3] == "new" {
			t.Fatalf("%s, newer than the listing's first page, was listed", id)
		}
	}
	if !slices.Equal(originals, want) {
		t.Fatalf("originals listed:\n got %v\nwant %v", originals, want)
	}
}

// Ranges that end inside a slot hold that slot (it starts before To), in
// Counts, Users and the listing: the listing's default end is "now".
// (Found by review: Pebble left out the minute holding To.)
func testRangeEndsMidMinute(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	base := t0.Truncate(24 * time.Hour).Add(10 * time.Hour)
	in := base.Add(5*time.Minute + 10*time.Second) // 10:05:10
	e := ev(p, sub, "a", "view", in)
	e.UserID = "u1"
	day := base.Truncate(24 * time.Hour).Add(24 * time.Hour)
	e2 := ev(p, sub, "b", "view", day.Add(10*time.Second)) // 00:00:10 the next day
	_, err := s.WriteEvents(ctx, []event.Event{e, e2})
	must(t, err)
	to := base.Add(5*time.Minute + 30*time.Second) // 10:05:30
	for _, res := range storage.Resolutions {
		sl, err := s.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerSubSystems, Key: p, Res: res, From: base.Add(-time.Hour), To: to})
		must(t, err)
		want := int64(1) // the next day's event too where one slot spans both (a week, but from a Sunday)
		if res.Slot(e2.Timestamp).Equal(res.Slot(in)) {
			want = 2
		}
		if len(sl) != 1 || sl[0].Total != want {
			t.Fatalf("%s slots starting before 10:05:30: %+v, want the one holding 10:05:10 (total %d)", res, sl, want)
		}
		us, err := storage.UserSlots(ctx, s, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: res, From: base.Add(-time.Hour), To: to})
		must(t, err)
		if len(us) != 1 {
			t.Fatalf("%s user slots starting before 10:05:30: %d", res, len(us))
		}
	}
	for _, c := range []struct{ from, to time.Time }{{base, to}, {day.Add(-time.Hour), day.Add(30 * time.Second)}} {
		evs, err := s.ListEvents(ctx, storage.EventsQuery{PartnerID: p, From: c.from, To: c.to, Limit: 10})
		must(t, err)
		if len(evs) != 1 {
			t.Fatalf("listing [%s, %s): %d events, want 1", c.from.Format(time.TimeOnly), c.to.Format(time.TimeOnly), len(evs))
		}
	}
}
