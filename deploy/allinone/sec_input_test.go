package allinone_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestSecInputText: a type error in a known field answers validation_failed
// naming the field, in JSON's words (never a Go type or method), and text
// that is not valid UTF-8 is refused naming its field: the JSON decoder
// would have turned each bad byte into U+FFFD, merging different event
// types into one.
func TestSecInputText(t *testing.T) {
	s := start(t, t.TempDir())
	a, subs, key := s.tenant("text", "web")
	for _, c := range []struct{ body, field string }{
		{`{"subSystemCode":"web","eventType":"x","timestamp":1767225600}`, "timestamp"},
		{`{"subSystemCode":"web","eventType":"x","timestamp":{"unix":1}}`, "timestamp"},
		{`{"subSystemCode":"web","eventType":"x","timestamp":"tomorrow"}`, "timestamp"},
		{`{"subSystemCode":"web","eventType":"x","userId":42}`, "userId"},
		{`{"subSystemCode":"web","eventType":["x"]}`, "eventType"},
		{"{\"subSystemCode\":\"web\",\"eventType\":\"view\xff\"}", "eventType"},
		{"{\"subSystemCode\":\"web\",\"eventType\":\"view\xfe\"}", "eventType"},
		{"{\"subSystemCode\":\"we\xc3\",\"eventType\":\"x\"}", "subSystemCode"},
		{"{\"subSystemCode\":\"web\",\"eventType\":\"x\",\"userId\":\"u\xed\xa0\x80\"}", "userId"},
		{"{\"subSystemCode\":\"web\",\"eventType\":\"x\",\"anonymousId\":\"\x80\"}", "anonymousId"},
		{"{\"subSystemCode\":\"web\",\"eventType\":\"x\",\"metadata\":{\"k\":\"\xf8\"}}", "metadata"},
		{"{\"subSystemCode\":\"web\",\"eventType\":\"x\",\"id\":\"a\xffb\"}", "id"},
		{`{"subSystemCode":"web","eventType":"view\udc00"}`, "eventType"}, // an unpaired surrogate escape: U+FFFD too
	} {
		r := s.do("POST", "/tracking", key, c.body)
		if r.Status != 400 || r.code() != "validation_failed" || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != c.field {
			t.Errorf("%q: %d %s %v, want validation_failed naming %s", c.body, r.Status, r.code(), r.Error, c.field)
			continue
		}
		for _, goism := range []string{"Time.", "Unmarshal", "time.Time", "*", "int64", "float64", "json."} {
			if strings.Contains(r.Error.Message, goism) || strings.Contains(r.Error.Fields[0].Message, goism) {
				t.Errorf("%q: the message names Go (%s): %v", c.body, goism, r.Error)
			}
		}
	}
	// In a bulk, each bad item is refused on its own; the good one is stored.
	r := s.must(202, "POST", "/tracking/bulk", key, "[{\"subSystemCode\":\"web\",\"eventType\":\"a\xffb\"},{\"subSystemCode\":\"web\",\"eventType\":\"ok\"}]", nil)
	if !strings.Contains(string(r.Data), `"index":0,"status":"Rejected","error":{"code":"validation_failed"`) {
		t.Fatalf("bulk with a bad item: %s", r.Data)
	}
	// Admin bodies too.
	expectCode(t, s.do("PUT", "/partners/"+a, "admin", "{\"name\":\"bad \xff name\"}"), 400, "validation_failed")
	expectCode(t, s.do("POST", "/partners/"+a+"/api-keys", "admin", `{"name":"k","expiredAt":1767225600}`), 400, "validation_failed")
	rep := s.waitTotal(subs["web"], 1)
	if len(rep.EventsByType) != 1 || rep.EventsByType["ok"] != 1 {
		t.Fatalf("stored types: %v", rep.EventsByType)
	}
}

// TestSecRequestIDAndHeaders: the request id is always the server's own
// (an incoming traceparent stays the parent span but does not choose it),
// and every answer carries X-Content-Type-Options: nosniff.
func TestSecRequestIDAndHeaders(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.Edge.RateLimit = 1 })
	_, _, key := s.tenant("hdr", "web")
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ids := map[string]bool{}
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("GET", s.base+"/health", nil)
		req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		r := s.send(req)
		if r.RequestID == traceID || ids[r.RequestID] || r.Header.Get("X-Request-Id") != r.RequestID {
			t.Fatalf("request id %q chosen by the client or reused (header %q)", r.RequestID, r.Header.Get("X-Request-Id"))
		}
		ids[r.RequestID] = true
	}

	root := strings.TrimSuffix(s.base, "/api/v1")
	check := func(method, url, auth, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("X-Api-Key", auth)
		}
		hr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
		if hr.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s (%d): no X-Content-Type-Options: nosniff", method, url, hr.StatusCode)
		}
	}
	event := `{"subSystemCode":"web","eventType":"x"}`
	check("POST", s.base+"/tracking", key, event) // 202
	check("POST", s.base+"/tracking", key, event) // 429
	check("POST", s.base+"/tracking", "", event)  // 401
	check("POST", s.base+"/tracking/bulk", key, "[")
	check("GET", s.base+"/nowhere", "", "")       // 404
	check("BREW", s.base+"/partners", "", "")     // 405
	check("OPTIONS", s.base+"/tracking", "", "")  // preflight
	check("GET", s.base+"/health", "", "")        // health
	check("GET", root+"/metrics", "", "")         // metrics
	check("GET", root+"/openapi/v1.json", "", "") // the OpenAPI document
	check("GET", root+"/unknown-root", "", "")    // 404 outside the API
}

// TestSecQueryAndScheme: a report's eventType no event can have (not
// UTF-8, control characters, longer than an ingested type may be) is
// refused naming it, on the reports and the events page; the Bearer scheme
// is matched without regard to case.
func TestSecQueryAndScheme(t *testing.T) {
	s := start(t, t.TempDir())
	p, subs, _ := s.tenant("query", "web")
	for _, bad := range []string{"%ff%fe", "a%01b", strings.Repeat("a", 129)} {
		for _, route := range []string{"/reports/sub-systems/" + subs["web"], "/reports/partners/" + p, "/reports/partners/" + p + "/events"} {
			r := s.do("GET", route+"?eventType="+bad, "admin", nil)
			expectCode(t, r, 400, "invalid_parameter")
			if !strings.Contains(string(r.Raw), "eventType") {
				t.Fatalf("%s?eventType=%s: %s, want the parameter named", route, bad, r.Raw)
			}
		}
	}
	for _, good := range []string{strings.Repeat("a", 128), "%24other"} { // the longest a type may be; the types past a slot's limit
		if r := s.do("GET", "/reports/partners/"+p+"?eventType="+good, "admin", nil); r.Status != 200 {
			t.Fatalf("eventType=%s: %d %s", good, r.Status, r.Raw)
		}
	}
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		req, _ := http.NewRequest("GET", s.base+"/partners", nil)
		req.Header.Set("Authorization", scheme+" "+s.admin)
		if r := s.send(req); r.Status != 200 {
			t.Fatalf("scheme %q: %d %s", scheme, r.Status, r.code())
		}
	}
}

// TestSecNoProfilerOnThePublicPort: the profiler is on the metrics listener
// only; the public API port does not serve it.
func TestSecNoProfilerOnThePublicPort(t *testing.T) {
	s := start(t, t.TempDir())
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile"} {
		r, err := http.Get("http://" + s.app.Addr() + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 404 {
			t.Fatalf("%s on the public port: %d", p, r.StatusCode)
		}
	}
}
