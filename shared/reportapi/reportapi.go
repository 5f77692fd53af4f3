// Package reportapi is the NATS protocol of the reporter service.
package reportapi

// Operations; each is the endpoint trk.report.<op>.
const (
	SubSystem = "subsystem" // report.SubSystemQuery -> report.SubSystemReport
	Partner   = "partner"   // report.PartnerQuery -> report.PartnerReport
	Events    = "events"    // report.EventsQuery -> report.EventsPage
	Health    = "health"
)

// Limits on a report's range, so a series stays a sensible size.
const (
	MaxSubSystemRangeHours = 24 * 366 // hourly series
	MaxPartnerRangeDays    = 366 * 10 // daily series
)
