// Package report holds the report queries and answers the reporter serves.
package report

import "time"

// Point is one bucket of a zero-filled time series.
type Point struct {
	Timestamp time.Time `json:"timestamp"`
	Count     int64     `json:"count"`
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
	Granularity   string           `json:"granularity"`
	TZ            string           `json:"tz"`
	TimeSeries    []Point          `json:"timeSeries"`
}

// PartnerQuery asks for one partner's counts in [From, To).
type PartnerQuery struct {
	PartnerID string    `json:"partnerId"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	// Granularity is hour, day (the default), week or month, in the IANA
	// zone TZ (default UTC).
	Granularity string `json:"granularity,omitempty"`
	TZ          string `json:"tz,omitempty"`
	// SubSystemID, when set, counts that sub-system only.
	SubSystemID string `json:"subSystemId,omitempty"`
	// Top is how many sub-systems topSubSystems lists (1-100, default 10).
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
	TopSubSystems []SubSystemCount `json:"topSubSystems"`
	Granularity   string           `json:"granularity"`
	TZ            string           `json:"tz"`
	TimeSeries    []Point          `json:"timeSeries"`
}

// MaxBuckets bounds a report's series: a range too long for its
// granularity is refused.
const MaxBuckets = 1500

// MaxTop bounds a top list.
const MaxTop = 100
