// Package report holds the report queries and answers the reporter serves.
package report

import (
	"fmt"
	"strconv"
	"time"

	"github.com/volcanion/tracking/shared/event"
)

// Point is one bucket of a zero-filled time series.
type Point struct {
	Timestamp time.Time `json:"timestamp"`
	Count     int64     `json:"count"`
	// UniqueUsers is the bucket's distinct users (estimated, see
	// UniqueUsersError); with eventType, that type's; absent when the
	// store does not know them for the range (a Cassandra keyspace
	// upgraded from a release before them, over a range from before).
	UniqueUsers *int64 `json:"uniqueUsers,omitempty"`
}

// Series is a report's time series. It encodes as []Point does, in one
// pass: a 30-day hourly series is 720 points, and encoding each through
// reflection and time.Time's MarshalJSON was a tenth of such a report's
// CPU.
type Series []Point

// MarshalJSON encodes s as encoding/json encodes a []Point.
func (s Series) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+len(s)*72)
	b = append(b, '[')
	for i, p := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"timestamp":"`...)
		var err error
		if b, err = p.Timestamp.AppendText(b); err != nil { // as MarshalJSON, unquoted
			return nil, fmt.Errorf("report: a point's timestamp: %w", err)
		}
		b = append(b, `","count":`...)
		b = strconv.AppendInt(b, p.Count, 10)
		if p.UniqueUsers != nil {
			b = append(b, `,"uniqueUsers":`...)
			b = strconv.AppendInt(b, *p.UniqueUsers, 10)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// UniqueUsersError is the relative standard error of every uniqueUsers
// figure (a HyperLogLog sketch with 2^14 registers): two estimates in
// three are within it, 99.7% within three times it.
const UniqueUsersError = 0.0081

// TypeCount is one row of a top list of event types.
type TypeCount struct {
	EventType  string `json:"eventType"`
	EventCount int64  `json:"eventCount"`
}

// SubSystemQuery asks for one sub-system's counts in [From, To).
type SubSystemQuery struct {
	SubSystemID string `json:"subSystemId"`
	// PartnerID, when set, restricts the query to that partner's sub-systems
	// (a partner key reading its own reports).
	PartnerID string    `json:"partnerId,omitempty"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	EventType string    `json:"eventType,omitempty"`
	// Granularity is minute, hour (the default), day, week or month, in
	// the IANA zone TZ (default UTC).
	Granularity string `json:"granularity,omitempty"`
	TZ          string `json:"tz,omitempty"`
}

// SubSystemReport has a series of the query's granularity.
type SubSystemReport struct {
	SubSystemID   string           `json:"subSystemId"`
	SubSystemCode string           `json:"subSystemCode"`
	SubSystemName string           `json:"subSystemName"`
	PartnerID     string           `json:"partnerId"`
	From          time.Time        `json:"from"`
	To            time.Time        `json:"to"`
	EventType     string           `json:"eventType,omitempty"`
	TotalEvents   int64            `json:"totalEvents"`
	EventsByType  map[string]int64 `json:"eventsByType"`
	// UniqueUsers is the range's distinct users (userId, else
	// anonymousId); as Point's.
	UniqueUsers *int64 `json:"uniqueUsers,omitempty"`
	Granularity string `json:"granularity"`
	TZ          string `json:"tz"`
	TimeSeries  Series `json:"timeSeries"`
	Freshness
}

// PartnerQuery asks for one partner's counts in [From, To).
type PartnerQuery struct {
	PartnerID string    `json:"partnerId"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	// Granularity is minute, hour, day (the default), week or month, in
	// the IANA zone TZ (default UTC).
	Granularity string `json:"granularity,omitempty"`
	TZ          string `json:"tz,omitempty"`
	// SubSystemID, when set, counts that sub-system only.
	SubSystemID string `json:"subSystemId,omitempty"`
	// EventType, when set, counts that event type only.
	EventType string `json:"eventType,omitempty"`
	// Top is how many entries topSubSystems and topEventTypes list (1-100,
	// default 10).
	Top int `json:"top,omitempty"`
}

// SubSystemCount is one row of a partner's top sub-systems.
type SubSystemCount struct {
	SubSystemID   string `json:"subSystemId"`
	SubSystemCode string `json:"subSystemCode"`
	SubSystemName string `json:"subSystemName"`
	EventCount    int64  `json:"eventCount"`
}

// PartnerReport has a daily series and the top sub-systems.
type PartnerReport struct {
	PartnerID     string           `json:"partnerId"`
	PartnerName   string           `json:"partnerName"`
	From          time.Time        `json:"from"`
	To            time.Time        `json:"to"`
	TotalEvents   int64            `json:"totalEvents"`
	SubSystemID   string           `json:"subSystemId,omitempty"`
	EventType     string           `json:"eventType,omitempty"`
	EventsByType  map[string]int64 `json:"eventsByType"`
	TopEventTypes []TypeCount      `json:"topEventTypes"`
	TopSubSystems []SubSystemCount `json:"topSubSystems"`
	// UniqueUsers is the range's distinct users; as Point's.
	UniqueUsers *int64 `json:"uniqueUsers,omitempty"`
	Granularity string `json:"granularity"`
	TZ          string `json:"tz"`
	TimeSeries  Series `json:"timeSeries"`
	Freshness
}

// EventsQuery asks for a page of a partner's raw events in [From, To),
// newest first.
type EventsQuery struct {
	PartnerID   string    `json:"partnerId"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	SubSystemID string    `json:"subSystemId,omitempty"`
	EventType   string    `json:"eventType,omitempty"`
	// Limit is the page size, 1-1000 (default 100).
	Limit int `json:"limit,omitempty"`
	// Cursor is a page's nextCursor, for the page after it (with the same
	// partner, range and filters).
	Cursor string `json:"cursor,omitempty"`
}

// EventsPage is a page of events, newest first (by timestamp, then id).
// NextCursor is absent on the last page.
type EventsPage struct {
	PartnerID   string        `json:"partnerId"`
	From        time.Time     `json:"from"`
	To          time.Time     `json:"to"`
	SubSystemID string        `json:"subSystemId,omitempty"`
	EventType   string        `json:"eventType,omitempty"`
	Limit       int           `json:"limit"`
	Events      []event.Event `json:"events"`
	NextCursor  string        `json:"nextCursor,omitempty"`
	// DataCompleteUntil and CachedAt: see Freshness. CachedAt stays the
	// last field: the cache stamps it on the bytes it keeps.
	DataCompleteUntil *time.Time `json:"dataCompleteUntil,omitempty"`
	CachedAt          *time.Time `json:"cachedAt,omitempty"`
}

// DefaultEventsLimit is a page's size when none is asked for.
const DefaultEventsLimit = 100

// Freshness says how current an answer is.
type Freshness struct {
	// DataCompleteUntil: every event received (by an edge, or by the bus
	// from an internal publisher) before this instant is counted; later
	// ones may still be on their way to storage. Absent when the
	// reporter cannot see the bus.
	DataCompleteUntil *time.Time `json:"dataCompleteUntil,omitempty"`
	// CachedAt is when a cached answer was computed (the HTTP Age header
	// says how long ago); absent on an answer computed for this request.
	CachedAt *time.Time `json:"cachedAt,omitempty"`
}

// MaxBuckets bounds a report's series: a range too long for its
// granularity is refused.
const MaxBuckets = 1500

// MaxTop bounds a top list.
const MaxTop = 100
