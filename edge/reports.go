package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/report/calendar"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// defaultReportDays is the range of a report asked for without one.
const defaultReportDays = 30

// parseTime reads an RFC 3339 time or a date. A date means the start of
// that day in the report's zone, or, for the end of a range, the end of it
// (so ?startDate=2026-01-01&endDate=2026-01-31 covers all of January, as in
// the reference). The time must lie in the range every instant of the API
// lies in, so that it and what is computed from it serialise.
func parseTime(name, v string, end bool, loc *time.Location) (time.Time, error) {
	t, err := calendar.ParseBound(v, loc)
	if err != nil {
		return time.Time{}, badParam(name, err.Error()) // calendar's, which says how to mend it
	}
	if err := instant.Check(t); err != nil {
		return time.Time{}, badParam(name, err.Error())
	}
	if end && len(v) == len(time.DateOnly) {
		if t = calendar.Next(t, calendar.Day, loc); t.After(instant.Max) {
			t = instant.Max // an exclusive end
		}
	}
	return t.UTC(), nil
}

// badParam refuses a query parameter, naming it.
func badParam(name, msg string) error {
	return &apierr.Error{Code: apierr.InvalidParameter, Message: name + " " + msg, Fields: []apierr.FieldError{{Field: name, Message: msg}}}
}

// Query parameters of the reports: anything else is refused, never ignored.
var (
	subSystemReportParams = []string{"from", "to", "startDate", "endDate", "granularity", "tz", "eventType"}
	partnerReportParams   = []string{"from", "to", "startDate", "endDate", "granularity", "tz", "subSystemId", "eventType", "top"}
	eventsParams          = []string{"from", "to", "subSystemId", "eventType", "limit", "cursor"}
)

// checkQuery refuses a query string pair that url.ParseQuery drops without a
// word (a bad %-escape, a semicolon, which Go no longer takes for a
// separator), naming the parameter: eventType=click% must not answer every
// type, limit=2; must not list 100. Every route's query passes it (handle).
func checkQuery(raw string) error {
	if raw == "" {
		return nil
	}
	pairs := strings.Split(raw, "&")
	if len(pairs) > maxQueryPairs {
		return badParam("query", fmt.Sprintf("has %d parameters; a route takes at most %d", len(pairs), maxQueryPairs))
	}
	for _, pair := range pairs {
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		shown, err := url.QueryUnescape(name)
		if err != nil {
			return badParam(name, "is not a well-formed parameter name (a bad %-escape)")
		}
		if shown == "" {
			return badParam("query", "has a value without a parameter name ("+strconv.Quote(pair)+")")
		}
		if strings.Contains(pair, ";") {
			return badParam(shown, "has a semicolon: separate parameters with & and escape a ; in a value as %3B")
		}
		if _, err := url.QueryUnescape(value); err != nil {
			return badParam(shown, "has a bad %-escape in its value: escape a % as %25")
		}
	}
	return nil
}

// maxQueryPairs bounds the pairs of a query string (empty ones included):
// no route takes a tenth of it, and Go's parser refuses past 10,000, which
// r.URL.Query() would drop whole.
const maxQueryPairs = 100

// checkParams refuses a parameter the route does not know, one given
// twice or empty, and two names of one bound: nothing is silently ignored.
func checkParams(q url.Values, known []string) error {
	for name, vs := range q {
		if !slices.Contains(known, name) {
			return badParam(name, "is not a parameter of this report; it takes "+strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return badParam(name, "is given more than once")
		}
		if strings.TrimSpace(vs[0]) == "" {
			return badParam(name, "is empty: give a value or leave it out")
		}
	}
	for _, pair := range [][2]string{{"from", "startDate"}, {"to", "endDate"}} {
		if q.Has(pair[0]) && q.Has(pair[1]) {
			return badParam(pair[1], "is another name for "+pair[0]+": give one of them")
		}
	}
	return nil
}

// reportZone reads tz (default UTC).
func reportZone(q url.Values) (*time.Location, error) {
	tz := q.Get("tz")
	if tz == "" {
		return time.UTC, nil
	}
	loc, err := calendar.ParseZone(tz)
	if err != nil {
		return nil, badParam("tz", err.Error())
	}
	return loc, nil
}

// reportEventType reads eventType ("" for all types): a type no event can
// have is refused, not answered with zeros.
func (s *Server) reportEventType(q url.Values) (string, error) {
	t := strings.TrimSpace(q.Get("eventType"))
	if msg := event.TypeNameProblem(t, s.cfg.Limits.MaxEventTypeLen); msg != "" {
		return "", badParam("eventType", msg)
	}
	return t, nil
}

// reportGranularity reads granularity ("" for the report's default).
func reportGranularity(q url.Values) (string, error) {
	g := q.Get("granularity")
	if g == "" {
		return "", nil
	}
	if _, err := calendar.ParseGranularity(g); err != nil {
		return "", badParam("granularity", err.Error())
	}
	return g, nil
}

// reportRange reads from/to (or the reference's startDate/endDate). Each
// end lies in [instant.Min, instant.Max]; a computed default is clamped to it.
func reportRange(q url.Values, now time.Time, loc *time.Location) (from, to time.Time, err error) {
	get := func(a, b string) (string, string) {
		if v := q.Get(a); v != "" {
			return a, v
		}
		return b, q.Get(b)
	}
	fn, fv := get("from", "startDate")
	tn, tv := get("to", "endDate")
	to = now.UTC()
	if tv != "" {
		if to, err = parseTime(tn, tv, true, loc); err != nil {
			return
		}
	}
	from = to.AddDate(0, 0, -defaultReportDays)
	if from.Before(instant.Min) {
		from = instant.Min
	}
	if fv != "" {
		from, err = parseTime(fn, fv, false, loc)
	} else if !from.Before(to) {
		err = badParam(tn, "must be after "+instant.Min.Format(time.RFC3339)+", where every range starts")
	}
	return
}

// reportParams reads what both reports share.
func reportParams(q url.Values, known []string, now time.Time) (from, to time.Time, granularity string, loc *time.Location, err error) {
	if err = checkParams(q, known); err != nil {
		return
	}
	if loc, err = reportZone(q); err != nil {
		return
	}
	if granularity, err = reportGranularity(q); err != nil {
		return
	}
	from, to, err = reportRange(q, now, loc)
	return
}

func (s *Server) reportRoutes() {
	s.handle(http.MethodGet, "/api/v1/reports/sub-systems/:id", func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		confined, cctx, err := s.reportAccess(r.Context(), r)
		if err != nil {
			return reply{}, err
		}
		if !tenant.ValidID(p.ByName("id")) {
			return reply{}, apierr.New(apierr.SubSystemNotFound, "sub-system not found: %s is not a sub-system id", quote(p.ByName("id")))
		}
		qv := r.URL.Query()
		from, to, granularity, loc, err := reportParams(qv, subSystemReportParams, s.now())
		if err != nil {
			return reply{}, err
		}
		eventType, err := s.reportEventType(qv)
		if err != nil {
			return reply{}, err
		}
		q := report.SubSystemQuery{SubSystemID: p.ByName("id"), PartnerID: confined, From: from, To: to, EventType: eventType,
			Granularity: granularity, TZ: loc.String()}
		raw, head, err := s.callReport(cctx, w, reportapi.SubSystem, q)
		if err != nil {
			return reply{}, err
		}
		rs.partnerID = head.PartnerID
		return ok(raw, ""), nil
	})
	s.handle(http.MethodGet, "/api/v1/reports/partners/:id", func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		cctx, err := s.partnerReportAccess(r, p, rs)
		if err != nil {
			return reply{}, err
		}
		qv := r.URL.Query()
		from, to, granularity, loc, err := reportParams(qv, partnerReportParams, s.now())
		if err != nil {
			return reply{}, err
		}
		eventType, err := s.reportEventType(qv)
		if err != nil {
			return reply{}, err
		}
		pq := report.PartnerQuery{PartnerID: p.ByName("id"), From: from, To: to, Granularity: granularity, TZ: loc.String(),
			SubSystemID: qv.Get("subSystemId"), EventType: eventType}
		if pq.SubSystemID != "" && !tenant.ValidID(pq.SubSystemID) {
			return reply{}, badParam("subSystemId", "must be a sub-system id (a UUID)")
		}
		if v := qv.Get("top"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > report.MaxTop {
				return reply{}, badParam("top", fmt.Sprintf("must be a whole number 1-%d", report.MaxTop))
			}
			pq.Top = n
		}
		raw, _, err := s.callReport(cctx, w, reportapi.Partner, pq)
		if err != nil {
			return reply{}, err
		}
		return ok(raw, ""), nil
	})
}

// reportHead is what the edge reads of a report: the rest passes through
// as the reporter encoded it (a large series is never decoded and encoded
// again here).
type reportHead struct {
	PartnerID string     `json:"partnerId"`
	CachedAt  *time.Time `json:"cachedAt"`
}

// callReport asks the reporter for a report and sets Age on an answer
// from its cache.
func (s *Server) callReport(ctx context.Context, w http.ResponseWriter, op string, q any) (json.RawMessage, reportHead, error) {
	var raw json.RawMessage
	var head reportHead
	if err := natsx.Call(ctx, s.nc, subject.Report(op), q, &raw); err != nil {
		return nil, head, err
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, head, apierr.New(apierr.Internal, "bad answer from the reporter: %v", err)
	}
	s.setAge(w, head.CachedAt)
	return raw, head, nil
}

// setAge gives an answer served from the reporter's cache the HTTP Age
// header (RFC 9111): seconds since it was computed.
func (s *Server) setAge(w http.ResponseWriter, cachedAt *time.Time) {
	if cachedAt != nil {
		w.Header().Set("Age", strconv.Itoa(max(0, int(s.now().Sub(*cachedAt)/time.Second))))
	}
}

// partnerReportAccess checks the credential of a route under
// /reports/partners/{id}: the admin, or a report key of that partner.
func (s *Server) partnerReportAccess(r *http.Request, p httprouter.Params, rs *reqState) (context.Context, error) {
	confined, cctx, err := s.reportAccess(r.Context(), r)
	if err != nil {
		return nil, err
	}
	if !tenant.ValidID(p.ByName("id")) || (confined != "" && confined != p.ByName("id")) {
		return nil, apierr.New(apierr.PartnerNotFound, "partner not found: %s is not a partner id", quote(p.ByName("id")))
	}
	rs.partnerID = p.ByName("id")
	return cctx, nil
}

// eventsRoute lists a partner's raw events, newest first, a page at a time.
func (s *Server) eventsRoute() {
	s.handle(http.MethodGet, "/api/v1/reports/partners/:id/events", func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		cctx, err := s.partnerReportAccess(r, p, rs)
		if err != nil {
			return reply{}, err
		}
		qv := r.URL.Query()
		if err := checkParams(qv, eventsParams); err != nil {
			return reply{}, err
		}
		// The range defaults in the reporter: to now and 30 days back for a
		// first page, to the cursor's range for the next.
		var from, to time.Time
		if v := qv.Get("from"); v != "" {
			if from, err = parseTime("from", v, false, time.UTC); err != nil {
				return reply{}, err
			}
		}
		if v := qv.Get("to"); v != "" {
			if to, err = parseTime("to", v, true, time.UTC); err != nil {
				return reply{}, err
			}
		}
		eventType, err := s.reportEventType(qv)
		if err != nil {
			return reply{}, err
		}
		q := report.EventsQuery{PartnerID: p.ByName("id"), From: from, To: to, SubSystemID: qv.Get("subSystemId"), EventType: eventType,
			Cursor: qv.Get("cursor")}
		if q.SubSystemID != "" && !tenant.ValidID(q.SubSystemID) {
			return reply{}, badParam("subSystemId", "must be a sub-system id (a UUID)")
		}
		if v := qv.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > storage.MaxEventsPage {
				return reply{}, badParam("limit", fmt.Sprintf("must be a whole number 1-%d", storage.MaxEventsPage))
			}
			q.Limit = n
		}
		if len(q.Cursor) > 512 {
			return reply{}, badParam("cursor", "is not a nextCursor of this listing; start again without it")
		}
		// Passed through as the reporter encoded it, with Age when it came
		// from the reporter's cache, as a report is.
		raw, _, err := s.callReport(cctx, w, reportapi.Events, q)
		if err != nil {
			return reply{}, err
		}
		return ok(raw, ""), nil
	})
}
