package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
)

// memEvents is an in-memory store of one partner's events, enough for
// ListEvents: Counts of any rollup and resolution, and a MinuteReader.
type memEvents struct {
	Events // only Counts is called
	mu     sync.Mutex
	evs    []event.Event
	counts int // Counts calls
}

func (m *memEvents) Counts(_ context.Context, q CountsQuery) ([]Slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts++
	by := map[time.Time]int64{}
	from := q.Res.Slot(q.From)
	for i := range m.evs {
		e := &m.evs[i]
		key, group := q.Rollup.Key(e)
		if key != q.Key || q.Group != "" && group != q.Group {
			continue
		}
		s := q.Res.Slot(e.Timestamp)
		if s.Before(from) || !s.Before(q.To) {
			continue
		}
		by[s]++
	}
	var out []Slot
	for s, n := range by {
		out = append(out, Slot{Start: s, Total: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

func (m *memEvents) read(_ context.Context, partnerID string, minute time.Time, _ MinuteFilter) ([]StoredEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StoredEvent
	for _, e := range m.evs {
		if e.PartnerID == partnerID && Minute.Slot(e.Timestamp).Equal(minute) {
			b, _ := json.Marshal(e)
			out = append(out, StoredEvent{At: e.Timestamp.Truncate(time.Millisecond), ID: e.ID, Body: b})
		}
	}
	return out, nil
}

func (m *memEvents) add(evs ...event.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, evs...)
}

// oldListWalk is listWalk as it was before 88b3f08.
func oldListWalk(ctx context.Context, ev Events, cq CountsQuery, q EventsQuery, read MinuteReader, res Res, from, end time.Time, out *[]event.Event) error {
	if !from.Before(end) {
		return nil
	}
	c := cq
	c.Res, c.From, c.To = res, from, end
	slots, err := ev.Counts(ctx, c)
	if err != nil {
		return err
	}
	if res != Minute {
		for i := len(slots) - 1; i >= 0 && len(*out) < q.Limit; i-- {
			s := slots[i].Start
			lo, hi := s, s.Add(res.Duration())
			if lo.Before(from) {
				lo = from
			}
			if hi.After(end) {
				hi = end
			}
			if err := oldListWalk(ctx, ev, cq, q, read, finer[res], lo, hi, out); err != nil {
				return err
			}
		}
		return nil
	}
	for i := len(slots) - 1; i >= 0 && len(*out) < q.Limit; {
		var batch []time.Time
		for need := int64(q.Limit - len(*out)); i >= 0 && need > 0 && len(batch) < minutesAtOnce; i-- {
			batch = append(batch, slots[i].Start)
			need -= slots[i].Total
		}
		got := readMinutes(ctx, read, q.PartnerID, batch, MinuteFilter{SubSystemID: q.SubSystemID, EventType: q.EventType, Maybe: bodyFilter(q)})
		for k := range batch {
			stored, err := got(k)
			if err != nil {
				return err
			}
			if err := pageOf(stored, q, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// oldListEvents is ListEvents with oldListWalk.
func oldListEvents(ctx context.Context, ev Events, q EventsQuery, read MinuteReader) ([]event.Event, error) {
	to := q.To
	if q.After != nil && q.After.Timestamp.Before(to) {
		to = Minute.Slot(q.After.Timestamp).Add(time.Minute)
	}
	cq := CountsQuery{Rollup: PartnerSubSystems, Key: q.PartnerID, Group: q.SubSystemID}
	switch {
	case q.SubSystemID != "" && q.EventType != "":
		cq = CountsQuery{Rollup: SubSystemTypes, Key: q.SubSystemID, Group: q.EventType}
	case q.EventType != "":
		cq = CountsQuery{Rollup: PartnerTypes, Key: q.PartnerID, Group: q.EventType}
	}
	cq.AlsoOther = cq.Group != ""
	out := make([]event.Event, 0, q.Limit)
	err := oldListWalk(ctx, ev, cq, q, read, Day, q.From, to, &out)
	return out, err
}

// The listing with the newest day and hour read first lists
// exactly what the listing before did, page by page, on sparse data (an
// empty newest day, hours and days apart, events past To), with ranges
// ending on day and hour boundaries, of one slot, and cursors in the
// newest slot; and reports how many Counts reads each made.
func TestListWalkSameAsBefore(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(29, 1))
	day0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	p, subs, types := "p", []string{"s1", "s2"}, []string{"view", "click", "buy"}
	var totalNew, totalOld, queries int
	for round := range 40 {
		m := &memEvents{}
		// Clusters: a few days, a few hours in each, a few minutes in each.
		n := 0
		for range 1 + r.IntN(5) {
			d := day0.AddDate(0, 0, r.IntN(20))
			for range 1 + r.IntN(3) {
				h := d.Add(time.Duration(r.IntN(24)) * time.Hour)
				for range 1 + r.IntN(4) {
					mi := h.Add(time.Duration(r.IntN(60)) * time.Minute)
					for range 1 + r.IntN(4) {
						ts := mi.Add(time.Duration(r.IntN(3)) * 17 * time.Second)
						m.add(event.Event{ID: fmt.Sprintf("e%04d", n), PartnerID: p, SubSystemID: subs[r.IntN(2)], EventType: types[r.IntN(3)], Timestamp: ts})
						n++
					}
				}
			}
		}
		bounds := []time.Time{day0, day0.AddDate(0, 0, 21)}
		for _, e := range m.evs {
			bounds = append(bounds, e.Timestamp, Minute.Slot(e.Timestamp), Hour.Slot(e.Timestamp), Day.Slot(e.Timestamp),
				Hour.Slot(e.Timestamp).Add(time.Hour), Day.Slot(e.Timestamp).AddDate(0, 0, 1), e.Timestamp.Add(time.Nanosecond))
		}
		for range 8 {
			from, to := bounds[r.IntN(len(bounds))], bounds[r.IntN(len(bounds))]
			if r.IntN(4) == 0 {
				to = from.Add([]time.Duration{time.Minute, time.Hour, 24 * time.Hour}[r.IntN(3)])
			}
			q := EventsQuery{PartnerID: p, From: from, To: to, Limit: []int{1, 2, 5, 50}[r.IntN(4)]}
			switch r.IntN(4) {
			case 1:
				q.SubSystemID = subs[r.IntN(2)]
			case 2:
				q.EventType = types[r.IntN(3)]
			case 3:
				q.SubSystemID, q.EventType = subs[r.IntN(2)], types[r.IntN(3)]
			}
			queries++
			// Page by page, both ways, each page compared.
			qn, qo := q, q
			for page := 0; page < 200; page++ {
				before := m.counts
				gotN, err := ListEvents(ctx, m, qn, m.read)
				if err != nil {
					t.Fatal(err)
				}
				mid := m.counts
				gotO, err := oldListEvents(ctx, m, qo, m.read)
				if err != nil {
					t.Fatal(err)
				}
				totalNew += mid - before
				totalOld += m.counts - mid
				ids := func(evs []event.Event) []string {
					var s []string
					for _, e := range evs {
						s = append(s, e.ID)
					}
					return s
				}
				if !slices.Equal(ids(gotN), ids(gotO)) {
					t.Fatalf("round %d %+v page %d:\n new %v\n old %v", round, qn, page, ids(gotN), ids(gotO))
				}
				if len(gotN) < q.Limit {
					break
				}
				last := gotN[len(gotN)-1]
				qn.After = &EventPos{last.Timestamp, last.ID}
				qo.After = qn.After
				// Events arrive between pages: newer than the listing, in
				// the cursor's minute, and older.
				m.add(event.Event{ID: fmt.Sprintf("n%d-%d", round, page), PartnerID: p, SubSystemID: subs[0], EventType: types[0], Timestamp: to.Add(-time.Duration(r.IntN(120)) * time.Second)},
					event.Event{ID: fmt.Sprintf("c%d-%d", round, page), PartnerID: p, SubSystemID: subs[0], EventType: types[0], Timestamp: last.Timestamp},
					event.Event{ID: fmt.Sprintf("o%d-%d", round, page), PartnerID: p, SubSystemID: subs[0], EventType: types[0], Timestamp: last.Timestamp.Add(-time.Duration(r.IntN(86400)) * time.Second)})
			}
		}
	}
	t.Logf("%d listings: Counts reads %d now, %d before", queries, totalNew, totalOld)
}

// The Counts reads of a page: a busy partner's from its newest hour, in
// one read of minutes; a rare type's over 30 days whose events lie in the
// first hours of a few days (the newest day empty) at most two more than
// by counts alone (the probe of the newest day and hour).
func TestListWalkReads(t *testing.T) {
	ctx := context.Background()
	m := &memEvents{}
	day0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for d := range 30 {
		if d%3 == 0 {
			m.add(event.Event{ID: fmt.Sprint("e", d), PartnerID: "p", SubSystemID: "s", EventType: "rare", Timestamp: day0.AddDate(0, 0, d).Add(2*time.Hour + 5*time.Minute)})
		}
	}
	q := EventsQuery{PartnerID: "p", From: day0, To: day0.AddDate(0, 0, 30).Add(13 * time.Hour), EventType: "rare", Limit: 100}
	before := m.counts
	gotN, err := ListEvents(ctx, m, q, m.read)
	if err != nil {
		t.Fatal(err)
	}
	mid := m.counts
	gotO, err := oldListEvents(ctx, m, q, m.read)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotN) != len(gotO) || len(gotN) != 10 {
		t.Fatalf("listed %d now, %d before", len(gotN), len(gotO))
	}
	t.Logf("one page of 10 events on 10 days: %d Counts reads now, %d before", mid-before, m.counts-mid)
	if now, was := mid-before, m.counts-mid; now > was+2 {
		t.Fatalf("a sparse page took %d Counts reads, %d before", now, was)
	}

	busy := &memEvents{}
	for i := range 3 * 24 * 60 {
		busy.add(event.Event{ID: fmt.Sprint("b", i), PartnerID: "p", SubSystemID: "s", EventType: "view", Timestamp: day0.Add(time.Duration(i) * time.Minute)})
	}
	q = EventsQuery{PartnerID: "p", From: day0, To: day0.AddDate(0, 0, 3), Limit: 30}
	got, err := ListEvents(ctx, busy, q, busy.read)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 || busy.counts != 1 {
		t.Fatalf("a busy partner's page: %d events in %d Counts reads, want 30 in one (its newest hour's minutes)", len(got), busy.counts)
	}
}
