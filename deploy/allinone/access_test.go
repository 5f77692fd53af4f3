package allinone_test

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/volcanion/tracking/shared/tenant"
)

// TestAccessMatrix walks every route with every kind of credential. A key
// of partner B can never write to, read from or manage anything of partner
// A; no answer and no log line holds a secret, a key or its hash.
func TestAccessMatrix(t *testing.T) {
	s := start(t, t.TempDir())
	a, subsA, ingestA := s.tenant("alpha", "web")
	b, _, _ := s.tenant("beta", "web")
	reportA := s.key(a, map[string]any{"scopes": []string{"report"}})
	keyB := s.key(b, map[string]any{"scopes": []string{"ingest", "report"}})
	revokedA := s.key(a, map[string]any{"scopes": []string{"ingest", "report"}})
	s.must(200, "DELETE", "/partners/"+a+"/api-keys/"+revokedA.ID, "admin", nil, nil)
	var keysA []struct{ ID string }
	s.must(200, "GET", "/partners/"+a+"/api-keys", "admin", nil, &keysA)
	secrets := []string{s.admin, ingestA, reportA.APIKey, keyB.APIKey, revokedA.APIKey, reportA.SigningSecret, keyB.SigningSecret}
	for _, k := range []string{ingestA, reportA.APIKey, keyB.APIKey} {
		_, secret, _ := tenant.ParseKey(k)
		h := tenant.HashSecret(secret)
		secrets = append(secrets, secret, hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h))
	}

	type route struct{ kind, method, path string }
	P, S := "/partners/"+a, "/partners/"+a+"/sub-systems/"+subsA["web"]
	K := "/partners/" + a + "/api-keys/" + keysA[0].ID
	// Ingest and report routes first: the last admin routes revoke and delete.
	routes := []route{
		{"public", "GET", "/health"}, {"public", "GET", "/health/ready"},
		{"ingest", "POST", "/tracking"}, {"ingest", "POST", "/tracking/bulk"}, {"ingest", "POST", "/tracking/events"},
		{"report", "GET", "/reports/sub-systems/" + subsA["web"]}, {"report", "GET", "/reports/partners/" + a},
		{"report", "GET", "/reports/partners/" + a + "/events"},
		{"admin", "GET", "/partners"}, {"admin", "POST", "/partners"}, {"admin", "GET", P}, {"admin", "PUT", P},
		{"admin", "PATCH", P + "/toggle-status"}, {"admin", "GET", "/partners/by-code/alpha"},
		{"admin", "GET", "/partners/" + a + "/sub-systems"}, {"admin", "POST", "/partners/" + a + "/sub-systems"},
		{"admin", "GET", S}, {"admin", "PUT", S}, {"admin", "PATCH", S + "/toggle-status"},
		{"admin", "GET", "/partners/" + a + "/sub-systems/by-code/web"}, {"admin", "GET", "/sub-systems"},
		{"admin", "GET", "/partners/" + a + "/api-keys"}, {"admin", "POST", "/partners/" + a + "/api-keys"},
		{"admin", "PUT", K}, {"admin", "POST", K + "/regenerate"}, {"admin", "DELETE", K}, {"admin", "DELETE", S}, {"admin", "DELETE", P},
	}
	creds := []struct{ name, auth string }{
		{"none", ""}, {"wrong admin", "wrong:"}, {"key A ingest", ingestA}, {"key A report", reportA.APIKey},
		{"key B", keyB.APIKey}, {"revoked key A", revokedA.APIKey}, {"admin", "admin"},
	}
	var bodies []string
	acceptedA := 0
	for _, rt := range routes {
		for _, c := range creds {
			var body any
			switch rt.kind {
			case "ingest":
				body = ev("web", "probe")
				if rt.path != "/tracking" {
					body = []any{ev("web", "probe")}
				}
			case "admin":
				body = map[string]any{"name": "n", "code": "c" + strings.ReplaceAll(c.name, " ", "")}
			}
			var r resp
			if strings.HasPrefix(c.auth, "wrong:") {
				r = s.doAsWithBody("not-the-admin-token-0000", rt.method, rt.path, body)
			} else {
				r = s.do(rt.method, rt.path, c.auth, body)
			}
			bodies = append(bodies, string(r.Raw))
			got := r.Status
			fail := func(want string) {
				t.Errorf("%s %s as %s: %d %s, want %s", rt.method, rt.path, c.name, got, r.code(), want)
			}
			switch rt.kind {
			case "public":
				if got != 200 {
					fail("200")
				}
			case "admin":
				if c.name == "admin" && (got == 401 || got == 403) || c.name != "admin" && got != 401 {
					fail("401 unless admin")
				}
			case "ingest":
				switch c.name {
				case "key A ingest":
					if got != 202 {
						fail("202")
					}
					acceptedA++
				case "key B":
					if got != 202 { // B's own data: the key decides the partner, never the body
						fail("202 into partner B")
					}
				case "key A report":
					if got != 403 {
						fail("403 (no ingest scope)")
					}
				default:
					if got != 401 {
						fail("401")
					}
				}
			case "report":
				switch c.name {
				case "admin", "key A report":
					if got != 200 {
						fail("200")
					}
				case "key A ingest":
					if got != 403 {
						fail("403 (no report scope)")
					}
				case "key B":
					if got != 404 {
						fail("404: another partner's report")
					}
				default:
					if got != 401 {
						fail("401")
					}
				}
			}
		}
	}
	// Every event A sent is A's; none of B's landed in A.
	s.waitTotal(subsA["web"], int64(acceptedA))

	logs := s.logs.String()
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		for _, b := range bodies {
			if strings.Contains(b, secret) {
				t.Errorf("an answer contains a secret (%.8s…): %.200s", secret, b)
			}
		}
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain a secret (%.8s…)", secret)
		}
	}
	if !strings.Contains(logs, `"route":"/api/v1/tracking"`) {
		t.Fatal("no request log lines were captured: the secrets check proves nothing")
	}
}

// A report key bound to one sub-system reads that sub-system only: its
// report, the partner's report and events narrowed to it (subSystemId),
// and is refused the rest naming what to ask (403). (Found by review: it
// read the whole partner.)
func TestBoundReportKey(t *testing.T) {
	s := start(t, t.TempDir())
	a, subs, _ := s.tenant("bound", "web", "ios")
	web, ios := subs["web"], subs["ios"]
	k := s.key(a, map[string]any{"scopes": []string{"report"}, "subSystemId": web})
	for path, want := range map[string]int{
		"/reports/sub-systems/" + web:                           200,
		"/reports/sub-systems/" + ios:                           403,
		"/reports/partners/" + a:                                403,
		"/reports/partners/" + a + "?subSystemId=" + web:        200,
		"/reports/partners/" + a + "?subSystemId=" + ios:        403,
		"/reports/partners/" + a + "/events":                    403,
		"/reports/partners/" + a + "/events?subSystemId=" + web: 200,
		"/reports/partners/" + a + "/events?subSystemId=" + ios: 403,
		"/reports/partners/" + a + "/tail":                      403,
		"/reports/partners/" + a + "/tail?subSystemId=" + ios:   403,
	} {
		r := s.do("GET", path, k.APIKey, nil)
		if r.Status != want {
			t.Errorf("%s with a key bound to web: %d %s, want %d", path, r.Status, r.Raw, want)
		}
		if want == 403 && (r.code() != "key_sub_system_mismatch" || !strings.Contains(string(r.Raw), web)) {
			t.Errorf("%s: %s, want key_sub_system_mismatch naming the key's sub-system", path, r.Raw)
		}
	}
	if st, _, stop := s.openTail("/reports/partners/"+a+"/tail?subSystemId="+web, k.APIKey); st != 200 {
		t.Errorf("the live tail of the key's own sub-system: %d, want 200", st)
	} else {
		stop()
	}
	// The admin still reads all of it.
	s.must(200, "GET", "/reports/partners/"+a, "admin", nil, nil)
}
