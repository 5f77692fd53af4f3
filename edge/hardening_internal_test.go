package edge

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/report"
)

// offline is an edge with no NATS: enough for routes that never reach it.
func offline(t *testing.T, logs *strings.Builder) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{"0123456789abcdef"}
	log := zerolog.Nop()
	if logs != nil {
		log = zerolog.New(logs)
	}
	s, err := New(cfg, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHandlerPanicIsAnInternalError: a panicking handler answers 500
// internal_error in the envelope, logs the panic once with its stack, and
// the server keeps serving.
func TestHandlerPanicIsAnInternalError(t *testing.T) {
	var logs strings.Builder
	s := offline(t, &logs)
	s.handle(http.MethodGet, "/api/v1/_panic", func(http.ResponseWriter, *http.Request, httprouter.Params, *reqState) (reply, error) {
		var m map[string]int
		m["boom"]++ // a nil map write: a real runtime panic
		return reply{}, nil
	})
	s.router.GET("/_raw-panic", func(http.ResponseWriter, *http.Request, httprouter.Params) { panic("raw") })
	for _, path := range []string{"/api/v1/_panic", "/_raw-panic"} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		var env envelope
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || w.Code != 500 || env.Error == nil ||
			env.Error.Code != apierr.Internal || env.RequestID == "" || strings.Contains(w.Body.String(), "nil map") {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: no nosniff on the 500", path)
		}
	}
	if n := strings.Count(logs.String(), `"handler panicked"`); n != 2 || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("%d panic log lines, stack logged: %v", n, strings.Contains(logs.String(), "goroutine"))
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/health", nil))
	if w.Code != 200 {
		t.Fatalf("after the panics: %d", w.Code)
	}
}

// TestRequestIDIsTheServers: an incoming traceparent does not choose the
// request id, and two requests never share one.
func TestRequestIDIsTheServers(t *testing.T) {
	s := offline(t, nil)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		r := httptest.NewRequest("GET", "/api/v1/health", nil)
		r.Header.Set("traceparent", parent)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var env envelope
		_ = json.Unmarshal(w.Body.Bytes(), &env)
		if env.RequestID == "" || strings.Contains(parent, env.RequestID) || env.RequestID != w.Header().Get("X-Request-Id") || seen[env.RequestID] {
			t.Fatalf("request id %q (header %q)", env.RequestID, w.Header().Get("X-Request-Id"))
		}
		seen[env.RequestID] = true
	}
}

// TestNosniffEverywhere: every kind of answer carries nosniff.
func TestNosniffEverywhere(t *testing.T) {
	s := offline(t, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/health"}, {"GET", "/nothing"}, {"PATCH", "/api/v1/partners"}, {"GET", "/metrics"},
		{"GET", "/openapi/v1.json"}, {"OPTIONS", "/api/v1/tracking"}, {"GET", "/api/v1/partners"},
	} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s (%d): no X-Content-Type-Options: nosniff", c.method, c.path, w.Code)
		}
	}
}

// requestSeries counts the series of trk_http_requests_total, and returns
// the count of the series with the given labels.
func requestSeries(t *testing.T, labels map[string]string) (series int, count float64) {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "trk_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			match := 0
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] == l.GetValue() {
					match++
				}
			}
			if match == len(labels) {
				count = m.GetCounter().GetValue()
			}
		}
	}
	return series, count
}

// TestMethodLabelIsBounded: made-up methods are counted as "other".
func TestMethodLabelIsBounded(t *testing.T) {
	s := offline(t, nil)
	send := func(m string) {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(m, "/api/v1/partners", nil))
	}
	other := map[string]string{"route": "unmatched", "method": "other", "status": "405"}
	send("FIRSTMADEUP")
	before, n0 := requestSeries(t, other)
	for i := 0; i < 200; i++ {
		b := make([]byte, 40)
		for j := range b {
			b[j] = 'A' + byte(rand.IntN(26))
		}
		send(string(b))
	}
	after, n1 := requestSeries(t, other)
	if after != before {
		t.Fatalf("made-up methods added %d series", after-before)
	}
	if n1-n0 != 200 {
		t.Fatalf("%v of 200 made-up methods counted as other", n1-n0)
	}
}

func TestBodyBudget(t *testing.T) {
	var b bodyBudget
	b.max.Store(10)
	a, c := &reqState{}, &reqState{}
	if !b.take(6) || b.take(5) || !b.take(4) {
		t.Fatal("budget arithmetic")
	}
	a.reserved, c.reserved = 6, 4
	b.give(a)
	b.give(a) // given back once only
	if b.used.Load() != 4 || !b.take(6) || b.take(1) {
		t.Fatalf("after give: %d used", b.used.Load())
	}
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{"0123456789abcdef"}
	cfg.MaxInflightBodyBytes = cfg.MaxBulkBytes - 1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "max-inflight-body-bytes") || !strings.Contains(err.Error(), "VT_MAX_INFLIGHT_BODY_BYTES") {
		t.Fatalf("a budget below one bulk: %v", err)
	}
}

// TestReportRangeBounds: report parameters outside the instant range are
// refused naming the parameter; a computed start is clamped.
func TestReportRangeBounds(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for q, param := range map[string]string{
		"to=9999-12-31T23:00:00-23:00":                      "to",
		"from=9999-06-01T00:00:00Z&to=9999-06-02T00:00:00Z": "to", // the end is read first
		"from=9999-06-01T00:00:00Z":                         "from",
		"from=2026-01-01&to=9999-12-31":                     "to",
		"startDate=1969-12-31":                              "startDate",
		"endDate=0001-01-01T00:00:00Z":                      "endDate",
		"from=2200-01-01T00:00:00Z":                         "from",
		"from=yesterday":                                    "from",
		"to=2026-02-30":                                     "to",
	} {
		v, _ := url.ParseQuery(q)
		_, _, err := reportRange(v, now, time.UTC)
		ae := apierr.From(err)
		if ae.Code != apierr.InvalidParameter || len(ae.Fields) != 1 || ae.Fields[0].Field != param || !strings.HasPrefix(ae.Message, param+" ") {
			t.Errorf("%s: %v, want invalid_parameter naming %s", q, err, param)
		}
	}
	v, _ := url.ParseQuery("to=1970-01-02")
	if from, to, err := reportRange(v, now, time.UTC); err != nil || !from.Equal(instant.Min) || !to.Equal(instant.Min.AddDate(0, 0, 2)) {
		t.Errorf("clamped default: %v %v %v", from, to, err)
	}
	v, _ = url.ParseQuery("from=2199-12-01&to=2199-12-31")
	if _, to, err := reportRange(v, now, time.UTC); err != nil || !to.Equal(instant.Max) {
		t.Errorf("the last day: %v %v", to, err)
	}
}

// FuzzReportRange: any parameters give a range whose ends lie in the
// instant range (and so serialise), or a 400 naming the parameter.
func FuzzReportRange(f *testing.F) {
	for _, s := range [][2]string{{"", ""}, {"2026-01-01", "2026-01-31"}, {"9999-06-01T00:00:00Z", "9999-12-31T23:00:00-23:00"},
		{"1969-12-31T23:59:59Z", "1970-01-01"}, {"2026-01-01T00:00:00.999999999+14:00", "x"}} {
		f.Add(s[0], s[1])
	}
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	// Dates are read in the report's zone: the farthest offsets either way.
	var zones []*time.Location
	for _, z := range []string{"UTC", "Asia/Kolkata", "Pacific/Kiritimati", "Pacific/Pago_Pago"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			f.Fatal(err)
		}
		zones = append(zones, loc)
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		q := url.Values{}
		if from != "" {
			q.Set("from", from)
		}
		if to != "" {
			q.Set("endDate", to)
		}
		f0, t0, err := reportRange(q, now, zones[(len(from)+len(to))%len(zones)])
		if err != nil {
			if ae := apierr.From(err); ae.Code != apierr.InvalidParameter || len(ae.Fields) != 1 {
				t.Fatalf("%q %q: %v", from, to, err)
			}
			return
		}
		for _, x := range []time.Time{f0, t0} {
			if x.Before(instant.Min) || x.After(instant.Max) {
				t.Fatalf("%q %q: %v out of range", from, to, x)
			}
		}
		if _, err := json.Marshal(report.SubSystemQuery{From: f0, To: t0}); err != nil {
			t.Fatalf("%q %q: the query does not serialise: %v", from, to, err)
		}
	})
}

// FuzzAdminBody: any admin body decodes, or is a 4xx naming what is wrong;
// what decodes builds a registry request that serialises, times in range.
func FuzzAdminBody(f *testing.F) {
	for _, s := range []string{`{"name":"k","scopes":["ingest"],"expiredAt":"2030-01-01T00:00:00Z"}`,
		`{"expiresAt":"9999-12-31T23:00:00-23:00"}`, `{"expiredAt":1}`, `{"rateLimit":"x","graceSeconds":1e99}`,
		`{"code":"a\xffb"}`, ``, `[]`, `{"retentionDays":-1,"requireSignature":null,"subSystemId":{}}`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, optional bool) {
		b, err := decodeAdminBody(data, optional)
		if err != nil {
			ae := apierr.From(err)
			if s := ae.Code.Status(); s < 400 || s >= 500 || ae.Code == apierr.ValidationFailed && len(ae.Fields) == 0 {
				t.Fatalf("%q: %v", data, err)
			}
			return
		}
		for _, x := range []*time.Time{b.ExpiredAt, b.ExpiresAt} {
			if x != nil && (!instant.Valid(*x) || x.Location() != time.UTC) {
				t.Fatalf("%q: time %v accepted", data, *x)
			}
		}
		req, _ := withBody(nil, nil, b)
		if _, err := json.Marshal(api.Request(req)); err != nil {
			t.Fatalf("%q: the registry request does not serialise: %v", data, err)
		}
	})
}

// TestHeadAnswersAsGet: every GET route but the live tail answers HEAD with
// GET's status and headers and no body, over a real connection (where
// net/http drops a HEAD's body); the tail answers 405.
func TestHeadAnswersAsGet(t *testing.T) {
	s := offline(t, nil)
	srv := httptest.NewServer(s)
	defer srv.Close()
	do := func(method, path string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, res.Body); err != nil {
			t.Fatal(err)
		}
		return res, []byte(b.String())
	}
	for _, path := range []string{"/api/v1/health", "/openapi/v1.json", "/metrics",
		"/api/v1/reports/partners/0190b6a2-7c1e-7000-8000-000000000001", // no credential: 401 both ways
		"/api/v1/reports/sub-systems/0190b6a2-7c1e-7000-8000-000000000001?granularity=year"} {
		get, body := do(http.MethodGet, path)
		head, hbody := do(http.MethodHead, path)
		if head.StatusCode != get.StatusCode || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") || len(hbody) != 0 || len(body) == 0 {
			t.Fatalf("%s: GET %d %q (%d bytes), HEAD %d %q (%d bytes)", path, get.StatusCode, get.Header.Get("Content-Type"), len(body),
				head.StatusCode, head.Header.Get("Content-Type"), len(hbody))
		}
	}
	if res, _ := do(http.MethodHead, "/api/v1/reports/partners/0190b6a2-7c1e-7000-8000-000000000001/tail"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HEAD on the tail: %d", res.StatusCode)
	}
}

// TestReportRoutesNameBothCredentials: a report asked with no credential is
// told both it accepts, the admin's and a partner key with the report scope.
func TestReportRoutesNameBothCredentials(t *testing.T) {
	s := offline(t, nil)
	for _, path := range []string{"/api/v1/reports/partners/0190b6a2-7c1e-7000-8000-000000000001",
		"/api/v1/reports/sub-systems/0190b6a2-7c1e-7000-8000-000000000001",
		"/api/v1/reports/partners/0190b6a2-7c1e-7000-8000-000000000001/events"} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		var env envelope
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || w.Code != 401 || env.Error == nil ||
			env.Error.Code != apierr.AdminRequired || !strings.Contains(env.Error.Message, "X-Api-Key") || !strings.Contains(env.Error.Message, "Bearer") {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
}
