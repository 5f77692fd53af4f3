package allinone_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/signing"
)

type createdKey struct {
	ID, APIKey, SigningSecret string
	Scopes                    []string
	LastUsedAt                *time.Time
}

func (s *sys) key(partnerID string, body map[string]any) createdKey {
	s.t.Helper()
	var k createdKey
	if body == nil {
		body = map[string]any{}
	}
	body["name"] = "k"
	s.must(201, "POST", "/partners/"+partnerID+"/api-keys", "admin", body, &k)
	return k
}

func expectCode(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.Status != status || r.code() != code {
		t.Fatalf("got %d %s (%v), want %d %s", r.Status, r.code(), r.Error, status, code)
	}
}

// TestKeyScopesAndBinding: scopes gate routes; a partner key reads only its
// own partner's reports; a bound key writes only to its sub-system.
func TestKeyScopesAndBinding(t *testing.T) {
	s := start(t, t.TempDir())
	a, subsA, ingestA := s.tenant("alpha", "web", "ios")
	b, subsB, _ := s.tenant("beta", "web")
	reportA := s.key(a, map[string]any{"scopes": []string{"report"}})
	bothA := s.key(a, map[string]any{"scopes": []string{"ingest", "report"}})

	expectCode(t, s.do("POST", "/tracking", reportA.APIKey, ev("web", "x")), 403, "scope_missing")
	expectCode(t, s.do("GET", "/reports/partners/"+a, ingestA, nil), 403, "scope_missing")
	s.must(202, "POST", "/tracking", bothA.APIKey, ev("web", "x"), nil)
	s.must(200, "GET", "/reports/partners/"+a, reportA.APIKey, nil, nil)
	s.must(200, "GET", "/reports/sub-systems/"+subsA["web"], reportA.APIKey, nil, nil)
	expectCode(t, s.do("GET", "/reports/partners/"+b, reportA.APIKey, nil), 404, "partner_not_found")
	expectCode(t, s.do("GET", "/reports/sub-systems/"+subsB["web"], reportA.APIKey, nil), 404, "sub_system_not_found")
	expectCode(t, s.do("POST", "/partners/"+a+"/api-keys", "admin", map[string]any{"name": "x", "scopes": []string{"admin"}}), 400, "validation_failed")
	expectCode(t, s.do("POST", "/partners/"+a+"/api-keys", "admin", map[string]any{"name": "x", "scopes": []string{}}), 400, "validation_failed")

	// Binding.
	bound := s.key(a, map[string]any{"subSystemId": subsA["ios"]})
	var out struct{ ID string }
	s.must(202, "POST", "/tracking", bound.APIKey, map[string]any{"eventType": "launch"}, &out)
	expectCode(t, s.do("POST", "/tracking", bound.APIKey, ev("web", "x")), 403, "key_sub_system_mismatch")
	s.must(202, "POST", "/tracking", bound.APIKey, ev("ios", "x"), nil)
	s.waitTotal(subsA["ios"], 2)
	expectCode(t, s.do("POST", "/partners/"+a+"/api-keys", "admin", map[string]any{"name": "x", "subSystemId": subsB["web"]}), 400, "validation_failed")
	expectCode(t, s.do("POST", "/tracking", ingestA, map[string]any{"eventType": "x"}), 400, "validation_failed") // unbound keys still need the code
}

// TestRotationGraceAndLastUse: a rotated key works for its grace period,
// then stops; a key's use is recorded (sampled).
func TestRotationGraceAndLastUse(t *testing.T) {
	s := start(t, t.TempDir())
	a, _, old := s.tenant("rot", "web")
	var keys []struct {
		ID         string
		LastUsedAt *time.Time
	}
	s.must(202, "POST", "/tracking", old, ev("web", "x"), nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.must(200, "GET", "/partners/"+a+"/api-keys", "admin", nil, &keys)
		if keys[0].LastUsedAt != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if keys[0].LastUsedAt == nil {
		t.Fatal("last use was not recorded")
	}
	var next createdKey
	s.must(201, "POST", "/partners/"+a+"/api-keys/"+keys[0].ID+"/regenerate", "admin", map[string]any{"graceSeconds": 2}, &next)
	s.must(202, "POST", "/tracking", old, ev("web", "x"), nil) // in its grace period
	s.must(202, "POST", "/tracking", next.APIKey, ev("web", "x"), nil)
	time.Sleep(2100 * time.Millisecond)
	expectCode(t, s.do("POST", "/tracking", old, ev("web", "x")), 401, "api_key_expired")
	s.must(202, "POST", "/tracking", next.APIKey, ev("web", "x"), nil)
	expectCode(t, s.do("POST", "/partners/"+a+"/api-keys/"+next.ID+"/regenerate", "admin", map[string]any{"graceSeconds": -1}), 400, "validation_failed")
}

// TestRateLimits: per-key limits from config, overridden per partner and per
// key; 429 with the real wait; RateLimit headers on success too; a bulk
// counts its events.
func TestRateLimits(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.Edge.RateLimit = 10 })
	a, _, key := s.tenant("limited", "web")
	// Until refused: at least the 10 of the burst pass (more when the bucket
	// refills meanwhile, on a slow machine), each saying what is left.
	var r resp
	sent := 0
	for ; sent < 40; sent++ {
		r = s.do("POST", "/tracking", key, ev("web", "x"))
		if r.Status != 202 {
			break
		}
		left, err := strconv.Atoi(r.Header.Get("RateLimit-Remaining"))
		if r.Header.Get("RateLimit-Limit") != "10" || err != nil || left < max(0, 9-sent) || left > 9 || r.Header.Get("RateLimit-Reset") == "" {
			t.Fatalf("headers on success %d: %v", sent, r.Header)
		}
	}
	if sent < 10 {
		t.Fatalf("refused after %d of a burst of 10", sent)
	}
	expectCode(t, r, 429, "rate_limited")
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 1 || ra > 2 || r.Header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers: %v", r.Header)
	}
	time.Sleep(1100 * time.Millisecond)
	var batch []any
	for i := 0; i < 11; i++ {
		batch = append(batch, ev("web", "x"))
	}
	expectCode(t, s.do("POST", "/tracking/bulk", key, batch), 429, "rate_limited") // 11 events > 10/s
	s.must(202, "POST", "/tracking/bulk", key, batch[:6], nil)
	expectCode(t, s.do("POST", "/tracking/bulk", key, batch[:6]), 429, "rate_limited") // 3 left: the refused 11 spent its admission token

	// Per partner, then per key.
	s.must(200, "PUT", "/partners/"+a, "admin", map[string]any{"rateLimit": 3}, nil)
	k2 := s.key(a, nil)
	for i := 0; i < 3; i++ {
		s.must(202, "POST", "/tracking", k2.APIKey, ev("web", "x"), nil)
	}
	expectCode(t, s.do("POST", "/tracking", k2.APIKey, ev("web", "x")), 429, "rate_limited")
	s.must(200, "PUT", "/partners/"+a+"/api-keys/"+k2.ID, "admin", map[string]any{"rateLimit": 50}, nil)
	// The edge learns of the change from the registry's broadcast.
	poll(t, "the key's own limit at the edge", 5*time.Second, func() bool {
		r = s.do("POST", "/tracking", k2.APIKey, ev("web", "x"))
		return r.Status == 202 && r.Header.Get("RateLimit-Limit") == "50"
	})
}

func signed(s *sys, path, key string, secret []byte, body []byte, at time.Time) *http.Request {
	req, _ := http.NewRequest("POST", s.base+path, bytes.NewReader(body))
	req.Header.Set("X-Api-Key", key)
	signing.SignRequest(req, body, secret, at)
	return req
}

// TestSignedRequests: a partner that requires signatures gets replay
// protection: unsigned, stale, tampered and replayed requests are refused
// with their own codes.
func TestSignedRequests(t *testing.T) {
	s := start(t, t.TempDir())
	var p struct{ ID string }
	s.must(201, "POST", "/partners", "admin", map[string]any{"code": "signed", "name": "S", "requireSignature": true}, &p)
	s.must(201, "POST", "/partners/"+p.ID+"/sub-systems", "admin", map[string]string{"code": "web", "name": "W"}, nil)
	k := s.key(p.ID, nil)
	secret, err := hex.DecodeString(k.SigningSecret)
	if err != nil || len(secret) != 32 {
		t.Fatalf("signing secret: %q", k.SigningSecret)
	}
	body, _ := json.Marshal(ev("web", "x"))
	expectCode(t, s.do("POST", "/tracking", k.APIKey, body), 401, "signature_required")

	req := signed(s, "/tracking", k.APIKey, secret, body, time.Now())
	if r := s.send(req); r.Status != 202 {
		t.Fatalf("signed request: %d %s", r.Status, r.code())
	}
	// The same request again, headers and all: a replay.
	replay, _ := http.NewRequest("POST", s.base+"/tracking", bytes.NewReader(body))
	replay.Header = req.Header.Clone()
	expectCode(t, s.send(replay), 401, "request_replayed")

	expectCode(t, s.send(signed(s, "/tracking", k.APIKey, secret, body, time.Now().Add(-6*time.Minute))), 401, "request_expired")
	// Signed for one body, sent with another.
	tampered, _ := http.NewRequest("POST", s.base+"/tracking", strings.NewReader(strings.Replace(string(body), `"x"`, `"y"`, 1)))
	tampered.Header = signed(s, "/tracking", k.APIKey, secret, body, time.Now()).Header
	expectCode(t, s.send(tampered), 401, "signature_invalid")
	wrong := signed(s, "/tracking/bulk", k.APIKey, secret, body, time.Now()) // signed for another path
	wrong.URL.Path = "/api/v1/tracking"
	expectCode(t, s.send(wrong), 401, "signature_invalid")
	// Per key: a partner that does not require signatures, one key that does.
	_, _, plain := s.tenant("unsigned", "web")
	var q struct{ ID string }
	s.must(200, "GET", "/partners/by-code/unsigned", "admin", nil, &q)
	strict := s.key(q.ID, map[string]any{"requireSignature": true})
	s.must(202, "POST", "/tracking", plain, ev("web", "x"), nil)
	expectCode(t, s.do("POST", "/tracking", strict.APIKey, ev("web", "x")), 401, "signature_required")
	strictSecret, _ := hex.DecodeString(strict.SigningSecret)
	if r := s.send(signed(s, "/tracking", strict.APIKey, strictSecret, body, time.Now())); r.Status != 202 {
		t.Fatalf("signed request of a strict key: %d %s", r.Status, r.code())
	}
	// Bulk, signed.
	bulk, _ := json.Marshal([]any{ev("web", "a"), ev("web", "b")})
	if r := s.send(signed(s, "/tracking/bulk", k.APIKey, secret, bulk, time.Now())); r.Status != 202 {
		t.Fatalf("signed bulk: %d %s", r.Status, r.code())
	}
}

// TestAdminTokenRotation: tokens in a file rotate without a restart.
func TestAdminTokenRotation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("# rotated weekly\ntoken-one-0123456789\n"), 0o600)
	s := startWith(t, t.TempDir(), func(c *config) { c.Edge.AdminTokensFile = file })
	if r := s.doAs("token-one-0123456789", "GET", "/partners"); r.Status != 200 {
		t.Fatalf("first token: %d", r.Status)
	}
	os.WriteFile(file, []byte("token-two-0123456789\n"), 0o600)
	os.Chtimes(file, time.Now().Add(time.Second), time.Now().Add(time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for s.doAs("token-two-0123456789", "GET", "/partners").Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the new token was not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	expectCode(t, s.doAs("token-one-0123456789", "GET", "/partners"), 401, "admin_credential_invalid")
}

// TestDataDirTokenRotates: the all-in-one's own token, kept in the data
// dir, rotates like a tokens file: replaced, it is re-read without a
// restart, on the edge and on the services that check it again.
func TestDataDirTokenRotates(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	old := s.admin
	s.must(201, "POST", "/partners", "admin", map[string]string{"code": "before", "name": "B"}, nil)
	next := "vta_rotated-0123456789abcdef"
	file := filepath.Join(dir, "admin-token")
	os.WriteFile(file, []byte(next+"\n"), 0o600)
	os.Chtimes(file, time.Now().Add(time.Second), time.Now().Add(time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for s.doAsWithBody(next, "POST", "/partners", map[string]string{"code": "after", "name": "A"}).Status != 201 {
		if time.Now().After(deadline) {
			t.Fatal("the replaced token was not picked up (by the edge and the registry)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	expectCode(t, s.doAs(old, "GET", "/partners"), 401, "admin_credential_invalid")
}
