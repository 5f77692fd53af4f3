package allinone_test

import (
	"net/url"
	"strings"
	"testing"
)

// TestSecHostileTimes: instants that cannot be serialised never reach a
// service. Times outside [1970, 2200) UTC are refused with 400 naming the
// field or parameter — a year-10000 report end once answered 500, a range
// inside year 9999 hung 5 s into a 503, and a key expiring in year 10000
// once in UTC ended the process — and the process keeps serving.
// (The edge's own panic recovery: edge.TestHandlerPanicIsAnInternalError.)
func TestSecHostileTimes(t *testing.T) {
	s := start(t, t.TempDir())
	a, subs, key := s.tenant("times", "web")
	reportKey := s.key(a, map[string]any{"scopes": []string{"report"}})
	const year10000 = "9999-12-31T23:00:00-23:00" // valid RFC 3339; year 10000 in UTC
	reports := []string{"/reports/sub-systems/" + subs["web"], "/reports/partners/" + a}
	for _, c := range []struct{ query, param string }{
		{"to=" + url.QueryEscape(year10000), "to"},
		{"endDate=9999-12-31", "endDate"},
		{"from=9999-06-01T00:00:00Z&to=9999-06-02T00:00:00Z", "to"},
		{"from=9999-06-01T00:00:00Z", "from"},
		{"startDate=0001-01-01", "startDate"},
		{"from=1969-12-31T23:00:00Z&to=1970-01-01T01:00:00Z", "from"},
	} {
		for _, path := range reports {
			for _, auth := range []string{"admin", reportKey.APIKey} {
				r := s.do("GET", path+"?"+c.query, auth, nil)
				if r.Status != 400 || r.code() != "invalid_parameter" || !strings.HasPrefix(r.Error.Message, c.param+" ") ||
					len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != c.param {
					t.Errorf("GET %s?%s: %d %s %v, want 400 invalid_parameter naming %s", path, c.query, r.Status, r.code(), r.Error, c.param)
				}
			}
		}
	}
	// The last accepted day still answers.
	s.must(200, "GET", reports[0]+"?from=2199-12-31&to=2199-12-31", "admin", nil, nil)

	for _, field := range []string{"expiredAt", "expiresAt"} {
		for _, v := range []string{year10000, "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z"} {
			r := s.do("POST", "/partners/"+a+"/api-keys", "admin", map[string]any{"name": "far", field: v})
			if r.Status != 400 || r.code() != "validation_failed" || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != field {
				t.Errorf("key with %s %s: %d %s %v", field, v, r.Status, r.code(), r.Error)
			}
		}
	}
	var keys []struct{ ID string }
	s.must(200, "GET", "/partners/"+a+"/api-keys", "admin", nil, &keys)
	expectCode(t, s.do("PUT", "/partners/"+a+"/api-keys/"+keys[0].ID, "admin", map[string]any{"expiredAt": year10000}), 400, "validation_failed")

	for _, v := range []any{year10000, "0000-01-01T00:00:00Z", 253402300800} {
		r := s.do("POST", "/tracking", key, ev("web", "x", "timestamp", v))
		if r.Status != 400 || r.code() != "validation_failed" || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != "timestamp" {
			t.Errorf("event timestamp %v: %d %s %v", v, r.Status, r.code(), r.Error)
		}
	}

	// Still serving: a key far in the future but in range, an event, a report.
	far := s.key(a, map[string]any{"expiredAt": "2199-12-31T23:00:00-00:30"})
	s.must(202, "POST", "/tracking", far.APIKey, ev("web", "x"), nil)
	s.must(200, "GET", "/health/ready", "", nil, nil)
	s.waitTotal(subs["web"], 1)
	if strings.Contains(s.logs.String(), "handler panicked") {
		t.Fatal("a handler panicked")
	}
}
