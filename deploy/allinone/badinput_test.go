package allinone_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every bad request gets its status and stable code, and
// nothing of it is stored.
func TestBadInput(t *testing.T) {
	s := start(t, t.TempDir())
	_, subs, key := s.tenant("bad", "web")
	tampered := key[:len(key)-1] + map[bool]string{true: "a", false: "b"}[key[len(key)-1] != 'a']
	bigMeta := `{"subSystemCode":"web","eventType":"x","metadata":{"blob":"` + strings.Repeat("a", 40<<10) + `"}}`
	var many []any
	for i := 0; i < 501; i++ {
		many = append(many, ev("web", "x"))
	}
	old := time.Now().AddDate(0, -2, 0).UTC().Format(time.RFC3339)
	cases := []struct {
		name, path, key string
		body            any
		status          int
		code, field     string
	}{
		{"malformed JSON", "/tracking", key, `{"subSystemCode":`, 400, "invalid_json", ""},
		{"not an object", "/tracking", key, `[1,2]`, 400, "invalid_json", ""},
		{"empty body", "/tracking", key, ``, 400, "invalid_json", ""},
		{"wrong type", "/tracking", key, `{"subSystemCode":"web","eventType":123}`, 400, "validation_failed", "eventType"},
		{"wrong metadata type", "/tracking", key, `{"subSystemCode":"web","eventType":"x","metadata":"str"}`, 400, "validation_failed", "metadata"},
		{"missing eventType", "/tracking", key, `{"subSystemCode":"web"}`, 400, "validation_failed", "eventType"},
		{"control chars", "/tracking", key, `{"subSystemCode":"web","eventType":"a\u0000b"}`, 400, "validation_failed", "eventType"},
		{"bad timestamp", "/tracking", key, `{"subSystemCode":"web","eventType":"x","timestamp":"yesterday"}`, 400, "validation_failed", "timestamp"},
		{"timestamp too old", "/tracking", key, `{"subSystemCode":"web","eventType":"x","timestamp":"` + old + `"}`, 400, "validation_failed", "timestamp"},
		{"bad client id", "/tracking", key, `{"subSystemCode":"web","eventType":"x","id":"has space"}`, 400, "validation_failed", "id"},
		{"missing key", "/tracking", "", ev("web", "x"), 401, "api_key_required", ""},
		{"malformed key", "/tracking", "not-a-key", ev("web", "x"), 401, "api_key_invalid", ""},
		{"tampered key", "/tracking", tampered, ev("web", "x"), 401, "api_key_invalid", ""},
		{"unknown key", "/tracking", "vtk_aaaaaaaaaaaaa_" + strings.Repeat("b", 52) + "ccccccc", ev("web", "x"), 401, "api_key_invalid", ""},
		{"unknown sub-system", "/tracking", key, ev("nope", "x"), 400, "validation_failed", "subSystemCode"},
		{"oversize body", "/tracking", key, `{"eventType":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "body_too_large", ""},
		{"oversize metadata", "/tracking", key, bigMeta, 413, "metadata_too_large", ""},
		{"empty bulk", "/tracking/bulk", key, `{"events":[]}`, 400, "validation_failed", "events"},
		{"bulk not a list", "/tracking/bulk", key, `{"events":{}}`, 400, "validation_failed", "events"},
		{"bulk too long", "/tracking/bulk", key, many, 413, "batch_too_large", ""},
		{"bulk too big", "/tracking/bulk", key, `[` + strings.Repeat(`{"eventType":"`+strings.Repeat("a", 1000)+`"},`, 5000) + `{}]`, 413, "body_too_large", ""},
		{"bulk all invalid", "/tracking/bulk", key, []any{ev("", "x"), ev("web", "")}, 400, "validation_failed", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do("POST", c.path, c.key, c.body)
			if r.Status != c.status || r.code() != c.code {
				t.Fatalf("got %d %s (%v), want %d %s", r.Status, r.code(), r.Error, c.status, c.code)
			}
			if c.field != "" {
				found := false
				for _, f := range r.Error.Fields {
					found = found || f.Field == c.field
				}
				if !found {
					t.Fatalf("error does not name field %q: %+v", c.field, r.Error)
				}
			}
		})
	}
	// A mixed bulk answers per item, in order; only the good one is stored.
	r := s.must(202, "POST", "/tracking/bulk", key, []any{ev("web", ""), ev("web", "ok"), "not an object"}, nil)
	want := `"index":0,"status":"Rejected"`
	if !strings.Contains(string(r.Data), want) || !strings.Contains(string(r.Data), `"index":2,"status":"Rejected"`) {
		t.Fatalf("mixed bulk: %s", r.Data)
	}
	s.waitTotal(subs["web"], 1)
	time.Sleep(200 * time.Millisecond)
	s.waitTotal(subs["web"], 1)

	// One id twice in one bulk with other content: the second is refused in
	// its result, naming the id, and the first is stored; the same event
	// again is one event.
	var res bulkAnswer
	r = s.must(202, "POST", "/tracking/bulk", key, []any{
		ev("web", "first", "id", "same-1"), ev("web", "second", "id", "same-1"), ev("web", "first", "id", "same-1"),
	}, &res)
	if res.Accepted != 2 || res.Rejected != 1 || res.Results[1].ID != "same-1" || res.Results[1].Error == nil || res.Results[1].Error.Code != "duplicate_event" {
		t.Fatalf("the same id with other content in one bulk: %s", r.Data)
	}
	rep := s.waitTotal(subs["web"], 2)
	if rep.EventsByType["first"] != 1 || rep.EventsByType["second"] != 0 {
		t.Fatalf("stored %v, want the first event once", rep.EventsByType)
	}
}

// TestAdminRules walks the registry's rules through HTTP.
func TestAdminRules(t *testing.T) {
	s := start(t, t.TempDir())
	a, subsA, keyA := s.tenant("alpha", "web")
	b, subsB, _ := s.tenant("beta", "web")

	// Credentials.
	if r := s.do("GET", "/partners", "", nil); r.Status != 401 || r.code() != "admin_credential_required" {
		t.Fatalf("no admin token: %d %s", r.Status, r.code())
	}
	if r := s.doAs("wrong-token-wrong-token", "GET", "/partners"); r.Status != 401 || r.code() != "admin_credential_invalid" {
		t.Fatalf("wrong admin token: %d %s", r.Status, r.code())
	}
	if r := s.do("GET", "/partners", keyA, nil); r.Status != 401 {
		t.Fatalf("partner key on an admin route: %d", r.Status)
	}

	// Codes and validation.
	expect := func(status int, code, method, path string, body any) {
		t.Helper()
		if r := s.do(method, path, "admin", body); r.Status != status || r.code() != code {
			t.Fatalf("%s %s: %d %s (%v), want %d %s", method, path, r.Status, r.code(), r.Error, status, code)
		}
	}
	expect(409, "code_taken", "POST", "/partners", map[string]string{"code": "alpha", "name": "Again"})
	expect(400, "validation_failed", "POST", "/partners", map[string]string{"code": "bad code!", "name": "x"})
	expect(400, "validation_failed", "POST", "/partners", map[string]string{"name": "no code"})
	expect(400, "validation_failed", "POST", "/partners", map[string]any{"code": "r", "name": "r", "retentionDays": 0})
	expect(400, "validation_failed", "PUT", "/partners/"+a, map[string]any{"retentionDays": 4000})
	var withRetention struct{ RetentionDays int }
	s.must(200, "PUT", "/partners/"+a, "admin", map[string]any{"retentionDays": 90}, &withRetention)
	if withRetention.RetentionDays != 90 {
		t.Fatalf("retention not set: %+v", withRetention)
	}
	expect(400, "validation_failed", "PUT", "/partners/"+a, map[string]string{"status": "Deleted"})
	expect(400, "validation_failed", "PUT", "/partners/"+a, map[string]string{"status": "Whatever"})
	expect(400, "invalid_json", "PUT", "/partners/"+a, `{"name":`)
	expect(400, "invalid_parameter", "GET", "/partners?pageSize=0", nil)
	expect(400, "invalid_parameter", "GET", "/partners?pageSize=1000", nil)
	expect(400, "invalid_parameter", "GET", "/partners?page=abc", nil)
	expect(404, "partner_not_found", "GET", "/partners/00000000-0000-0000-0000-000000000000", nil)
	expect(404, "partner_not_found", "GET", "/partners/not-a-uuid", nil)
	expect(404, "route_not_found", "GET", "/nothing-here", nil)
	expect(405, "method_not_allowed", "PATCH", "/partners", nil)

	// By code.
	var p struct{ ID, Status string }
	s.must(200, "GET", "/partners/by-code/alpha", "admin", nil, &p)
	if p.ID != a {
		t.Fatalf("partner by code: %+v", p)
	}
	var ss struct{ ID, Code, Name, Status string }
	s.must(200, "GET", "/partners/"+a+"/sub-systems/by-code/web", "admin", nil, &ss)
	if ss.ID != subsA["web"] {
		t.Fatalf("sub-system by code: %+v", ss)
	}

	// Ownership: B's sub-system is not found under A, by any route.
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		expect(404, "sub_system_not_found", m, "/partners/"+a+"/sub-systems/"+subsB["web"], map[string]string{"name": "x"})
	}
	expect(404, "sub_system_not_found", "PATCH", "/partners/"+a+"/sub-systems/"+subsB["web"]+"/toggle-status", nil)

	// Sub-system update: name and code; code unique within the partner.
	s.must(201, "POST", "/partners/"+a+"/sub-systems", "admin", map[string]string{"code": "ios", "name": "iOS"}, nil)
	expect(409, "code_taken", "PUT", "/partners/"+a+"/sub-systems/"+subsA["web"], map[string]string{"code": "ios"})
	s.must(200, "PUT", "/partners/"+a+"/sub-systems/"+subsA["web"], "admin", map[string]string{"code": "www", "name": "Website"}, &ss)
	if ss.Code != "www" || ss.Name != "Website" {
		t.Fatalf("after update: %+v", ss)
	}
	s.must(202, "POST", "/tracking", keyA, ev("www", "x"), nil)
	if r := s.do("POST", "/tracking", keyA, ev("web", "x")); r.Status != 400 {
		t.Fatalf("old code after rename: %d", r.Status)
	}

	// Toggle a sub-system: refused at once, then admitted again.
	s.must(200, "PATCH", "/partners/"+a+"/sub-systems/"+subsA["web"]+"/toggle-status", "admin", nil, &ss)
	if r := s.do("POST", "/tracking", keyA, ev("www", "x")); r.Status != 403 || r.code() != "sub_system_inactive" {
		t.Fatalf("inactive sub-system: %d %s", r.Status, r.code())
	}
	s.must(200, "PATCH", "/partners/"+a+"/sub-systems/"+subsA["web"]+"/toggle-status", "admin", nil, nil)
	s.must(202, "POST", "/tracking", keyA, ev("www", "x"), nil)

	// Keys: listed without secrets; revoke, regenerate and expiry act at once.
	r := s.must(200, "GET", "/partners/"+a+"/api-keys", "admin", nil, nil)
	if strings.Contains(string(r.Data), "hash") || strings.Contains(string(r.Data), "apiKey") || strings.Contains(string(r.Data), keyA[18:]) {
		t.Fatalf("key list leaks a secret: %s", r.Data)
	}
	var keys []struct{ ID, Status string }
	s.must(200, "GET", "/partners/"+a+"/api-keys", "admin", nil, &keys)
	var regen struct{ ID, APIKey string }
	s.must(201, "POST", "/partners/"+a+"/api-keys/"+keys[0].ID+"/regenerate", "admin", nil, &regen)
	if r := s.do("POST", "/tracking", keyA, ev("www", "x")); r.Status != 401 || r.code() != "api_key_revoked" {
		t.Fatalf("old key after regenerate: %d %s", r.Status, r.code())
	}
	s.must(202, "POST", "/tracking", regen.APIKey, ev("www", "x"), nil)
	s.must(200, "DELETE", "/partners/"+a+"/api-keys/"+regen.ID, "admin", nil, nil)
	if r := s.do("POST", "/tracking", regen.APIKey, ev("www", "x")); r.Status != 401 || r.code() != "api_key_revoked" {
		t.Fatalf("revoked key: %d %s", r.Status, r.code())
	}
	expect(404, "api_key_not_found", "DELETE", "/partners/"+b+"/api-keys/"+regen.ID, nil) // A's key under B
	expect(400, "validation_failed", "POST", "/partners/"+a+"/api-keys", map[string]any{"name": "past", "expiredAt": time.Now().Add(-time.Hour)})
	var short struct{ APIKey string }
	s.must(201, "POST", "/partners/"+a+"/api-keys", "admin", map[string]any{"name": "short", "expiresAt": time.Now().Add(1500 * time.Millisecond)}, &short)
	s.must(202, "POST", "/tracking", short.APIKey, ev("www", "x"), nil)
	time.Sleep(1600 * time.Millisecond)
	if r := s.do("POST", "/tracking", short.APIKey, ev("www", "x")); r.Status != 401 || r.code() != "api_key_expired" {
		t.Fatalf("expired key: %d %s", r.Status, r.code())
	}

	// Partner toggle and delete.
	_, subsC, keyC := s.tenant("gamma", "web")
	var pc struct{ ID string }
	s.must(200, "GET", "/partners/by-code/gamma", "admin", nil, &pc)
	s.must(200, "PATCH", "/partners/"+pc.ID+"/toggle-status", "admin", nil, nil)
	if r := s.do("POST", "/tracking", keyC, ev("web", "x")); r.Status != 403 || r.code() != "partner_inactive" {
		t.Fatalf("inactive partner: %d %s", r.Status, r.code())
	}
	s.must(200, "PATCH", "/partners/"+pc.ID+"/toggle-status", "admin", nil, nil)
	s.must(202, "POST", "/tracking", keyC, ev("web", "x"), nil)
	s.must(200, "DELETE", "/partners/"+pc.ID, "admin", nil, nil)
	if r := s.do("POST", "/tracking", keyC, ev("web", "x")); r.Status < 401 || r.Status > 403 {
		t.Fatalf("deleted partner's key: %d %s", r.Status, r.code())
	}
	expect(409, "partner_deleted", "PATCH", "/partners/"+pc.ID+"/toggle-status", nil)
	expect(409, "partner_deleted", "PUT", "/partners/"+pc.ID, map[string]string{"name": "back"})
	expect(409, "partner_deleted", "POST", "/partners/"+pc.ID+"/sub-systems", map[string]string{"code": "n", "name": "n"})
	s.must(200, "GET", "/partners/"+pc.ID+"/api-keys", "admin", nil, &keys)
	for _, k := range keys {
		if k.Status != "Revoked" {
			t.Fatalf("deleted partner's key still %s", k.Status)
		}
	}
	s.must(200, "GET", "/partners/"+pc.ID+"/sub-systems/"+subsC["web"], "admin", nil, &ss)
	if ss.Status != "Inactive" {
		t.Fatalf("deleted partner's sub-system is %s", ss.Status)
	}
	var page struct {
		Data       []struct{ ID string }
		TotalCount int
		TotalPages int
	}
	s.must(200, "GET", "/partners?page=1&pageSize=2", "admin", nil, &page)
	if page.TotalCount != 2 || page.TotalPages != 1 || len(page.Data) != 2 {
		t.Fatalf("list without deleted: %+v", page)
	}
	s.must(200, "GET", "/partners?includeDeleted=true&pageSize=1&page=3", "admin", nil, &page)
	if page.TotalCount != 3 || page.TotalPages != 3 || len(page.Data) != 1 || page.Data[0].ID != pc.ID {
		t.Fatalf("list with deleted, last page: %+v", page)
	}
	// The deleted partner's code is free again.
	s.must(201, "POST", "/partners", "admin", map[string]string{"code": "gamma", "name": "New gamma"}, nil)
	var all []struct{ ID string }
	s.must(200, "GET", "/sub-systems", "admin", nil, &all)
	if len(all) != 3 { // alpha: www, ios; beta: web; the deleted partner's are left out
		t.Fatalf("all sub-systems: %d %s", len(all), fmt.Sprint(all))
	}
}

// TestCORS: browsers may send events from any origin; admin routes give
// them nothing.
func TestCORS(t *testing.T) {
	s := start(t, t.TempDir())
	_, _, key := s.tenant("web", "site")
	req, _ := http.NewRequest("OPTIONS", s.base+"/tracking/bulk", nil)
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "x-api-key, content-type")
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 204 || hr.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(hr.Header.Get("Access-Control-Allow-Headers"), "X-Api-Key") {
		t.Fatalf("preflight: %d %v", hr.StatusCode, hr.Header)
	}
	r := s.must(202, "POST", "/tracking", key, ev("site", "x"), nil)
	if r.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "RateLimit-Remaining") {
		t.Fatalf("CORS on ingest: %v", r.Header)
	}
	if r := s.must(200, "GET", "/partners", "admin", nil, nil); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an admin route answered with CORS headers")
	}
	req, _ = http.NewRequest("OPTIONS", s.base+"/partners", nil)
	if hr, _ := http.DefaultClient.Do(req); hr.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an admin route answered a preflight")
	}
}
