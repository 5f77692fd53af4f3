package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/volcanion/tracking/shared/event"
)

// EventsQuery asks for a partner's stored events, newest first: by
// timestamp descending, then id ascending.
type EventsQuery struct {
	PartnerID   string
	From, To    time.Time // timestamps in [From, To)
	SubSystemID string    // only this sub-system's, when set
	EventType   string    // only this type, when set
	Limit       int       // 1..MaxEventsLimit
	// After continues a listing after the event at this position, so a
	// listing neither repeats nor skips a stored event while new ones
	// arrive (those newer than the first page's first are not listed).
	After *EventPos
}

// EventPos is a position in a listing.
type EventPos struct {
	Timestamp time.Time
	ID        string
}

// MaxEventsPage bounds a page of events.
const MaxEventsPage = 1000

// MaxEventsLimit bounds a listing's Limit: a page and one more, which tells
// a lister whether another page follows.
const MaxEventsLimit = MaxEventsPage + 1

// comesAfter reports whether e comes after p in a listing.
func comesAfter(e *event.Event, p EventPos) bool {
	if !e.Timestamp.Equal(p.Timestamp) {
		return e.Timestamp.Before(p.Timestamp)
	}
	return e.ID > p.ID
}

// StoredEvent is an event as a MinuteReader found it, not yet decoded.
type StoredEvent struct {
	// At is the event's timestamp as the backend orders it: the timestamp,
	// or the timestamp truncated (Cassandra keeps milliseconds). Truncation
	// keeps the order: an event whose At is before another's has a
	// timestamp before the other's.
	At   time.Time
	ID   string
	Body []byte // the event as json.Marshal wrote it
}

// MinuteReader reads the stored events of a partner whose timestamps fall
// in one UTC minute, in any order. It may leave out an event f rules out.
type MinuteReader func(ctx context.Context, partnerID string, minute time.Time, f MinuteFilter) ([]StoredEvent, error)

// MinuteFilter is what a listing lists: a MinuteReader may leave out an
// event of another sub-system or type (when set), or whose stored JSON
// body Maybe reports false for. What it returns is checked again.
type MinuteFilter struct {
	SubSystemID, EventType string
	Maybe                  func(body []byte) bool
}

// ListEvents lists events with a backend's MinuteReader, reading only the
// minutes the rollups say hold a matching event: the non-empty days of the
// range, newest first, then their non-empty hours, then minutes. A page
// costs the minutes it spans, whatever the range.
func ListEvents(ctx context.Context, ev Events, q EventsQuery, read MinuteReader) ([]event.Event, error) {
	if q.Limit < 1 || q.Limit > MaxEventsLimit {
		return nil, errors.New("storage: limit out of range")
	}
	to := q.To
	if q.After != nil && q.After.Timestamp.Before(to) {
		to = Minute.Slot(q.After.Timestamp).Add(time.Minute) // its minute may hold more
	}
	// The rollup whose slots say where matching events are.
	cq := CountsQuery{Rollup: PartnerSubSystems, Key: q.PartnerID, Group: q.SubSystemID}
	switch {
	case q.SubSystemID != "" && q.EventType != "":
		cq = CountsQuery{Rollup: SubSystemTypes, Key: q.SubSystemID, Group: q.EventType}
	case q.EventType != "":
		cq = CountsQuery{Rollup: PartnerTypes, Key: q.PartnerID, Group: q.EventType}
	}
	// A slot past MaxGroups counts a type or sub-system it does not name
	// under OtherGroup: it may hold one too.
	cq.AlsoOther = cq.Group != ""
	out := make([]event.Event, 0, q.Limit)
	err := listWalk(ctx, ev, cq, q, read, Day, q.From, to, true, &out)
	return out, err
}

// bodyFilter is a quick test of a stored body (as json.Marshal wrote it)
// against the filters: a body without `"eventType":"<type>"` cannot be of
// that type. A body that has it may still not be (the text can sit in
// metadata): ListEvents decodes it and checks.
func bodyFilter(q EventsQuery) func([]byte) bool {
	var needles [][]byte
	for _, f := range []struct{ name, v string }{{"eventType", q.EventType}, {"subSystemId", q.SubSystemID}} {
		if f.v != "" {
			v, _ := json.Marshal(f.v)
			needles = append(needles, append([]byte(`"`+f.name+`":`), v...))
		}
	}
	return func(body []byte) bool {
		for _, n := range needles {
			if !bytes.Contains(body, n) {
				return false
			}
		}
		return true
	}
}

// finer is the next resolution a listing descends to.
var finer = map[Res]Res{Day: Hour, Hour: Minute}

// listWalk visits the non-empty slots of res in [from, end), newest first,
// descending to finer slots, until out is full. newest: [from, end) ends
// where the listing starts.
func listWalk(ctx context.Context, ev Events, cq CountsQuery, q EventsQuery, read MinuteReader, res Res, from, end time.Time, newest bool, out *[]event.Event) error {
	if !from.Before(end) {
		return nil
	}
	if newest && res != Minute {
		// Where the listing starts, the newest slot first, without asking
		// which slots hold events: a busy partner's page lies in its last
		// hour, and finding it by counts of days, then hours, then minutes
		// cost three reads where one of minutes does. Only a page it
		// leaves short asks which of the slots before hold any (and the
		// slots found so are walked by their counts: a sparse listing
		// reads no slot it knows to be empty).
		last := res.Slot(end.Add(-time.Nanosecond))
		if last.After(from) {
			if err := listWalk(ctx, ev, cq, q, read, finer[res], last, end, true, out); err != nil || len(*out) >= q.Limit {
				return err
			}
			end = last
		}
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
			if err := listWalk(ctx, ev, cq, q, read, finer[res], lo, hi, false, out); err != nil {
				return err
			}
		}
		return nil
	}
	// Minutes, newest first, read a few at once: as many as their counts say
	// fill the page (a page of one type among 50 spans some 20 minutes, each
	// a read of every bucket of the partner's minute).
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

// pageOf appends to out, up to q.Limit, the events of one minute that match
// q, newest first. It decodes only the events that may be on the page: a
// minute of a busy partner holds hundreds, a page takes what it lacks.
// They are taken newest first by At, a run of equal At at a time, and the
// run's decoded events sorted by their own timestamps: every event of a
// later run is older than every event of an earlier one.
func pageOf(stored []StoredEvent, q EventsQuery, out *[]event.Event) error {
	sort.Slice(stored, func(i, j int) bool {
		if a, b := stored[i].At, stored[j].At; !a.Equal(b) {
			return a.After(b)
		}
		return stored[i].ID < stored[j].ID
	})
	var run []event.Event
	for i := 0; i < len(stored) && len(*out) < q.Limit; {
		run = run[:0]
		j := i
		for ; j < len(stored) && stored[j].At.Equal(stored[i].At); j++ {
			// At is at most the timestamp: at or past To, or past the
			// cursor's, so is the timestamp.
			if at := stored[j].At; !at.Before(q.To) || q.After != nil && at.After(q.After.Timestamp) {
				continue
			}
			var e event.Event
			if err := event.DecodeStored(stored[j].Body, &e); err != nil {
				return fmt.Errorf("storage: list events: stored event %q: %w", stored[j].ID, err)
			}
			switch {
			case e.Timestamp.Before(q.From) || !e.Timestamp.Before(q.To),
				q.SubSystemID != "" && e.SubSystemID != q.SubSystemID,
				q.EventType != "" && e.EventType != q.EventType,
				q.After != nil && !comesAfter(&e, *q.After):
				continue
			}
			run = append(run, e)
		}
		sort.Slice(run, func(a, b int) bool { return comesAfter(&run[b], EventPos{run[a].Timestamp, run[a].ID}) })
		for k := 0; k < len(run) && len(*out) < q.Limit; k++ {
			*out = append(*out, run[k])
		}
		i = j
	}
	return nil
}

// minutesAtOnce bounds the minutes a listing reads at once.
const minutesAtOnce = 4

// readMinutes starts reading the minutes and returns their results by index
// (each waits for its read).
func readMinutes(ctx context.Context, read MinuteReader, partnerID string, minutes []time.Time, f MinuteFilter) func(int) ([]StoredEvent, error) {
	type result struct {
		evs  []StoredEvent
		err  error
		done chan struct{}
	}
	rs := make([]result, len(minutes))
	for k, m := range minutes {
		rs[k].done = make(chan struct{})
		go func() {
			defer close(rs[k].done)
			rs[k].evs, rs[k].err = read(ctx, partnerID, m, f)
		}()
	}
	return func(k int) ([]StoredEvent, error) {
		<-rs[k].done
		return rs[k].evs, rs[k].err
	}
}
