package reporter

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/natsx"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// A cursor is the position of a page's last event, bound to the listing it
// came from: used with another partner, range or filter it is refused, not
// silently applied to a listing it does not belong to.
type cursor struct {
	T    time.Time `json:"t"`
	I    string    `json:"i"`
	From time.Time `json:"f"`
	To   time.Time `json:"u"`
	Q    string    `json:"q"`
}

func listingID(q report.EventsQuery) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s", q.PartnerID, q.SubSystemID, q.EventType))
	return hex.EncodeToString(h[:8])
}

func encodeCursor(q report.EventsQuery, e event.Event) string {
	b, _ := json.Marshal(cursor{T: e.Timestamp, I: e.ID, From: q.From, To: q.To, Q: listingID(q)})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads q's cursor, and gives q the range of the listing it
// continues (a range given again must be the same).
func decodeCursor(q *report.EventsQuery) (*storage.EventPos, error) {
	bad := param("cursor", "is not a nextCursor of this listing (same partner, range and filters); start again without it")
	b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	if err != nil {
		return nil, bad
	}
	var c cursor
	// A cursor is the client's to rewrite: its position must be where a
	// page of its listing can end, inside its range (a page's cache key
	// holds the position, and one outside is no page's).
	if err := json.Unmarshal(b, &c); err != nil || c.Q != listingID(*q) || c.I == "" ||
		(!q.From.IsZero() && !q.From.Equal(c.From)) || (!q.To.IsZero() && !q.To.Equal(c.To)) ||
		c.T.Before(c.From) || !c.T.Before(c.To) {
		return nil, bad
	}
	// A rewritten range is the cursor's fault, not a from or to the
	// request did not send.
	if checkRange(c.From, c.To, reportapi.MaxRangeDays*24*time.Hour) != nil {
		return nil, bad
	}
	// In UTC, as the edge gives a range: the page names its range as a
	// computed one does, whatever zone the cursor was written in.
	q.From, q.To = c.From.UTC(), c.To.UTC()
	return &storage.EventPos{Timestamp: c.T.UTC(), ID: c.I}, nil
}

// defaultEventDays is how far back a listing without from reaches.
const defaultEventDays = 30

// EventsPage lists a partner's raw events, newest first, a page at a time.
func (s *Service) EventsPage(ctx context.Context, q report.EventsQuery) (*report.EventsPage, error) {
	return decoded[report.EventsPage](s.EventsPageJSON(ctx, q))
}

// EventsPageJSON is EventsPage as the bytes sent. A page of a range that
// was given (or a cursor's) is cached as reports are, under every
// parameter and the cursor's position, with the partner's generation: a
// late event stored into the closed past makes the next request list it.
// A first page without to lists up to now, a range never asked again: it
// is computed, never kept.
func (s *Service) EventsPageJSON(ctx context.Context, q report.EventsQuery) (json.RawMessage, error) {
	if !tenant.ValidID(q.PartnerID) {
		return nil, apierr.New(apierr.InvalidParameter, "partnerId must be a UUID")
	}
	if q.SubSystemID != "" && !tenant.ValidID(q.SubSystemID) {
		return nil, param("subSystemId", "must be a sub-system id (a UUID)")
	}
	if q.Limit == 0 {
		q.Limit = report.DefaultEventsLimit
	}
	if q.Limit < 1 || q.Limit > storage.MaxEventsPage {
		return nil, param("limit", "must be 1-%d", storage.MaxEventsPage)
	}
	var after *storage.EventPos
	if q.Cursor != "" {
		var err error
		if after, err = decodeCursor(&q); err != nil {
			return nil, err
		}
	}
	keep := !q.To.IsZero()
	if q.To.IsZero() {
		q.To = s.now().UTC()
	}
	if q.From.IsZero() {
		if !q.To.After(instant.Min) {
			return nil, param("to", "must be after %s, where every range starts", instant.Min.Format(time.RFC3339))
		}
		q.From = q.To.AddDate(0, 0, -defaultEventDays)
		if q.From.Before(instant.Min) {
			q.From = instant.Min // a default, clamped as the reports' is
		}
	}
	if err := checkRange(q.From, q.To, reportapi.MaxRangeDays*24*time.Hour); err != nil {
		return nil, err
	}
	compute := func() (*report.EventsPage, error) { return s.eventsPage(ctx, q, after) }
	if !keep {
		release, err := s.turn(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		page, err := compute()
		if err != nil {
			return nil, err
		}
		return encodeAnswer(page)
	}
	return cached(ctx, s, q.PartnerID, pageKey(q, after), q.To, maxKeptPage, func() error { return nil }, compute)
}

// maxKeptPage bounds the pages kept in the cache: a default page of
// ordinary events (100 of about 400 bytes) is kept; a page of 1,000, or of
// large metadata, is mostly read once, and would take the room of many
// reports.
const maxKeptPage = 128 << 10

// pageKey is a page's cache key: every parameter, and the position a
// cursor continues from (its range is q's by then). Instants are written
// exactly, never as a number that wraps. v2: a full last page has no
// nextCursor (a v1 page's, kept by an older reporter, may lead to an
// empty one).
func pageKey(q report.EventsQuery, after *storage.EventPos) string {
	exact := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	pos := "first"
	if after != nil {
		pos = fmt.Sprintf("%s:%q", exact(after.Timestamp), after.ID)
	}
	return fmt.Sprintf("events:v2:%s:%s:%s:%s:%q:%d:%s", q.PartnerID, exact(q.From), exact(q.To), q.SubSystemID, q.EventType, q.Limit, pos)
}

// eventsPage lists the page of q after after.
func (s *Service) eventsPage(ctx context.Context, q report.EventsQuery, after *storage.EventPos) (*report.EventsPage, error) {
	p, err := s.partner(ctx, q.PartnerID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
	} else if err != nil {
		return nil, err
	}
	if q.SubSystemID != "" {
		ss, err := s.subSystem(ctx, q.SubSystemID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && ss.PartnerID != p.ID) {
			return nil, param("subSystemId", "is not a sub-system of this partner")
		} else if err != nil {
			return nil, err
		}
	}
	ctx, complete := s.completeUntil(ctx)
	// One more than the page: a page is followed by a nextCursor only when
	// another event follows it, so the last page is never an empty one.
	evs, err := s.store.ListEvents(ctx, storage.EventsQuery{PartnerID: p.ID, From: q.From, To: q.To, SubSystemID: q.SubSystemID,
		EventType: q.EventType, Limit: q.Limit + 1, After: after})
	if err != nil {
		return nil, err
	}
	more := len(evs) > q.Limit
	if more {
		evs = evs[:q.Limit]
	}
	if n := fitting(evs, s.pageBytes()); n < len(evs) {
		evs, more = evs[:n], true
	}
	page := &report.EventsPage{PartnerID: p.ID, From: q.From, To: q.To, SubSystemID: q.SubSystemID, EventType: q.EventType,
		Limit: q.Limit, Events: evs, DataCompleteUntil: complete}
	if page.Events == nil {
		page.Events = []event.Event{}
	}
	if more {
		page.NextCursor = encodeCursor(q, evs[len(evs)-1])
	}
	return page, nil
}

// maxPageBytes bounds a page's events as encoded (natsx.ReplyBudget): 1,000
// events of 32 KiB of metadata each could never be sent as one reply. A
// page holds the events that fit, at least one, and nextCursor continues
// after them.
const maxPageBytes, pageMargin = natsx.MaxReplyBytes, natsx.ReplyMargin

// pageBytes is maxPageBytes, or less on a bus whose largest message is
// smaller.
func (s *Service) pageBytes() int { return natsx.ReplyBudget(s.nc) }

// fitting is how many of evs, from the first, come to at most budget bytes
// encoded (at least one). Most pages are far under it: a bound of each
// event's encoding (every byte of its strings escaped to six) settles them
// without encoding; the rest are encoded one by one (AppendJSON: the bytes
// encoding/json writes, HTML escaped, so never fewer than the answer's).
func fitting(evs []event.Event, budget int) int {
	bound := 0
	for i := range evs {
		e := &evs[i]
		bound += 512 + 6*(len(e.ID)+len(e.PartnerID)+len(e.SubSystemID)+len(e.SubSystemCode)+len(e.EventType)+
			len(e.UserID)+len(e.AnonymousID)+len(e.Metadata)+len(e.IP)+len(e.UserAgent)+len(e.KeyID))
	}
	if bound <= budget {
		return len(evs)
	}
	var buf []byte
	size := 0
	for i := range evs {
		buf = evs[i].AppendJSON(buf[:0])
		if size += len(buf) + 1; size > budget && i > 0 {
			return i
		}
	}
	return len(evs)
}
