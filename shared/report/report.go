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
}

// SubSystemReport has an hourly series.
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
	TimeSeries    []Point          `json:"timeSeries"`
}

// PartnerQuery asks for one partner's counts in [From, To).
type PartnerQuery struct {
	PartnerID string    `json:"partnerId"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
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
	TopSubSystems []SubSystemCount `json:"topSubSystems"`
	Granularity   string           `json:"granularity"`
	TimeSeries    []Point          `json:"timeSeries"`
}
