package edge

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/julienschmidt/httprouter"
	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// defaultReportDays is the range of a report asked for without one.
const defaultReportDays = 30

// parseTime reads an RFC 3339 time or a date. A date means the start of
// that UTC day, or, for the end of a range, the end of it (so
// ?startDate=2026-01-01&endDate=2026-01-31 covers all of January, as in the reference).
// The time must lie in the range every instant of the API lies in, so
// that it and what is computed from it serialise.
func parseTime(name, v string, end bool) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		d, derr := time.Parse(time.DateOnly, v)
		if derr != nil {
			return time.Time{}, badParam(name, "must be a date (2026-01-31) or an RFC 3339 time (2026-01-31T12:00:00Z)")
		}
		if err := instant.Check(d); err != nil {
			return time.Time{}, badParam(name, err.Error())
		}
		if end {
			d = d.AddDate(0, 0, 1) // at most instant.Max: an exclusive end
		}
		return d, nil
	}
	t = t.UTC()
	if err := instant.Check(t); err != nil {
		return time.Time{}, badParam(name, err.Error())
	}
	return t, nil
}

// badParam refuses a query parameter, naming it.
func badParam(name, msg string) error {
	return &apierr.Error{Code: apierr.InvalidParameter, Message: name + " " + msg, Fields: []apierr.FieldError{{Field: name, Message: msg}}}
}

// reportRange reads from/to (or the reference's startDate/endDate). Each
// end lies in [instant.Min, instant.Max]; a computed default is clamped to it.
func reportRange(q url.Values, now time.Time) (from, to time.Time, err error) {
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
		if to, err = parseTime(tn, tv, true); err != nil {
			return
		}
	}
	from = to.AddDate(0, 0, -defaultReportDays)
	if from.Before(instant.Min) {
		from = instant.Min
	}
	if fv != "" {
		from, err = parseTime(fn, fv, false)
	}
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
		from, to, err := reportRange(r.URL.Query(), s.now())
		if err != nil {
			return reply{}, err
		}
		eventType := strings.TrimSpace(r.URL.Query().Get("eventType"))
		if !utf8.ValidString(eventType) {
			return reply{}, apierr.New(apierr.InvalidParameter, "eventType must be valid UTF-8")
		}
		q := report.SubSystemQuery{SubSystemID: p.ByName("id"), PartnerID: confined, From: from, To: to, EventType: eventType}
		var rep report.SubSystemReport
		if err := natsx.Call(cctx, s.nc, subject.Report(reportapi.SubSystem), q, &rep); err != nil {
			return reply{}, err
		}
		rs.partnerID = rep.PartnerID
		return ok(rep, ""), nil
	})
	s.handle(http.MethodGet, "/api/v1/reports/partners/:id", func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		confined, cctx, err := s.reportAccess(r.Context(), r)
		if err != nil {
			return reply{}, err
		}
		if !tenant.ValidID(p.ByName("id")) || (confined != "" && confined != p.ByName("id")) {
			return reply{}, apierr.New(apierr.PartnerNotFound, "partner not found: %s is not a partner id", quote(p.ByName("id")))
		}
		rs.partnerID = p.ByName("id")
		from, to, err := reportRange(r.URL.Query(), s.now())
		if err != nil {
			return reply{}, err
		}
		var rep report.PartnerReport
		if err := natsx.Call(cctx, s.nc, subject.Report(reportapi.Partner), report.PartnerQuery{PartnerID: p.ByName("id"), From: from, To: to}, &rep); err != nil {
			return reply{}, err
		}
		return ok(rep, ""), nil
	})
}

// health is liveness: the process answers.
func (s *Server) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (reply, error) {
	return ok(map[string]string{"status": "healthy", "service": "Volcanion Tracking edge"}, ""), nil
}

// ready is readiness: NATS, the event stream, and storage behind the
// registry and reporter all answer.
func (s *Server) ready(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (reply, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	healthy := true
	check := func(name string, err error) {
		if err != nil {
			checks[name] = apierr.From(err).Message
			if apierr.From(err).Code == apierr.Internal {
				checks[name] = err.Error()
			}
			healthy = false
			return
		}
		checks[name] = "ok"
	}
	if s.nc.Status() != nats.CONNECTED {
		check("nats", apierr.New(apierr.Unavailable, "not connected (%s)", s.nc.Status()))
	} else {
		check("nats", nil)
	}
	_, err := s.js.Stream(ctx, subject.EventsStream)
	check("eventStream", err)
	check("registry", natsx.Call(ctx, s.nc, subject.Registry(registryapi.Health), registryapi.Request{}, nil))
	check("reporter", natsx.Call(ctx, s.nc, subject.Report(reportapi.Health), struct{}{}, nil))
	data := map[string]any{"status": "ready", "checks": checks}
	if !healthy {
		data["status"] = "not ready"
		return reply{status: http.StatusServiceUnavailable, data: data}, apierr.New(apierr.Unavailable, "a dependency is not ready")
	}
	return ok(data, ""), nil
}
