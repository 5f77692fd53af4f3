// Package reportapi is the NATS protocol of the reporter service.
package reportapi

// Operations; each is the endpoint trk.report.<op>.
const (
	SubSystem = "subsystem" // report.SubSystemQuery -> report.SubSystemReport
	Partner   = "partner"   // report.PartnerQuery -> report.PartnerReport
	Events    = "events"    // report.EventsQuery -> report.EventsPage
	Health    = "health"
)

// MaxRangeDays bounds the range of a report or a listing: ten years. A
// series is bounded by its points (report.MaxBuckets) too.
const MaxRangeDays = 366 * 10
