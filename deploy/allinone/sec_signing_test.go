package allinone_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/signing"
)

func signedGet(s *sys, path, key string, secret []byte, at time.Time) *http.Request {
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("X-Api-Key", key)
	signing.SignRequest(req, nil, secret, at)
	return req
}

// TestSecSignedReports: signing rules hold on every route a key can call.
// A key that must sign (by its own setting or its partner's) must sign
// report requests too, over an empty body; unsigned, stale and replayed
// report requests get the same 401 codes as on tracking routes.
func TestSecSignedReports(t *testing.T) {
	s := start(t, t.TempDir())
	a, subs, _ := s.tenant("plain", "web")
	strict := s.key(a, map[string]any{"scopes": []string{"report"}, "requireSignature": true})
	lax := s.key(a, map[string]any{"scopes": []string{"report"}})
	var p struct{ ID string }
	s.must(201, "POST", "/partners", "admin", map[string]any{"code": "strictp", "name": "S", "requireSignature": true}, &p)
	byPartner := s.key(p.ID, map[string]any{"scopes": []string{"report"}})

	for _, c := range []struct {
		name string
		k    createdKey
		path string
	}{
		{"key requires", strict, "/reports/sub-systems/" + subs["web"]},
		{"key requires", strict, "/reports/partners/" + a},
		{"partner requires", byPartner, "/reports/partners/" + p.ID},
	} {
		secret, _ := hex.DecodeString(c.k.SigningSecret)
		expectCode(t, s.do("GET", c.path, c.k.APIKey, nil), 401, "signature_required")
		req := signedGet(s, c.path, c.k.APIKey, secret, time.Now())
		if r := s.send(req); r.Status != 200 {
			t.Fatalf("%s: signed report: %d %s %v", c.name, r.Status, r.code(), r.Error)
		}
		replay, _ := http.NewRequest("GET", req.URL.String(), nil)
		replay.Header = req.Header.Clone()
		expectCode(t, s.send(replay), 401, "request_replayed")
		expectCode(t, s.send(signedGet(s, c.path, c.k.APIKey, secret, time.Now().Add(-time.Hour))), 401, "request_expired")
		other := signedGet(s, "/reports/partners/"+a, c.k.APIKey, secret, time.Now()) // signed for another path
		other.URL.Path = "/api/v1" + c.path
		if c.path != "/reports/partners/"+a {
			expectCode(t, s.send(other), 401, "signature_invalid")
		}
		// The query is signed too: a captured request with another range
		// or filter is refused.
		from := time.Now().UTC().Add(-48 * time.Hour).Format(time.RFC3339)
		q := signedGet(s, c.path+"?from="+from, c.k.APIKey, secret, time.Now())
		if r := s.send(q); r.Status != 200 {
			t.Fatalf("%s: signed report with a query: %d %s", c.name, r.Status, r.code())
		}
		for _, changed := range []string{"from=2020-01-01T00:00:00Z", "from=" + from + "&eventType=zz", ""} {
			tampered := signedGet(s, c.path+"?from="+from, c.k.APIKey, secret, time.Now())
			tampered.URL.RawQuery = changed
			expectCode(t, s.send(tampered), 401, "signature_invalid")
		}
	}
	// A key that need not sign still reads unsigned; the admin never signs.
	s.must(200, "GET", "/reports/partners/"+a, lax.APIKey, nil, nil)
	s.must(200, "GET", "/reports/partners/"+p.ID, "admin", nil, nil)
}

// TestSecNoBodyReadBeforeChecks: the key, the signature headers and the
// rate limit are checked before a byte of the body is read. Each request
// here declares a body it never sends: an edge that read it would wait for
// it, so an answer at all shows it was not read.
func TestSecNoBodyReadBeforeChecks(t *testing.T) {
	s := start(t, t.TempDir())
	a, _, _ := s.tenant("early", "web")
	signer := s.key(a, map[string]any{"requireSignature": true})
	throttled := s.key(a, map[string]any{"rateLimit": 1})
	// Spend the throttled key's one token.
	s.must(202, "POST", "/tracking", throttled.APIKey, ev("web", "x"), nil)

	for _, c := range []struct {
		name, path, key, code string
		status                int
	}{
		{"no key", "/tracking/bulk", "", "api_key_required", 401},
		{"unknown key", "/tracking/events", "vtk_aaaaaaaaaaaaa_" + strings.Repeat("b", 52) + "ccccccc", "api_key_invalid", 401},
		{"unsigned", "/tracking/bulk", signer.APIKey, "signature_required", 401},
		{"no tokens", "/tracking/bulk", throttled.APIKey, "rate_limited", 429},
	} {
		// Declared larger than the 256 KiB Go's server drains by itself
		// before answering, and within the bulk limit.
		pr, pw := io.Pipe()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the server's read timeout is 30 s
		stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
		req, _ := http.NewRequestWithContext(ctx, "POST", s.base+c.path, io.MultiReader(strings.NewReader(`[{"subSystemCode":"web",`), pr))
		req.ContentLength = 1 << 20
		if c.key != "" {
			req.Header.Set("X-Api-Key", c.key)
		}
		hr, err := http.DefaultClient.Do(req)
		stop()
		pw.Close()
		cancel()
		if err != nil {
			t.Fatalf("%s %s: no answer without the body (was it read?): %v", c.name, c.path, err)
		}
		hr.Body.Close()
		if hr.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d %s", c.name, c.path, hr.StatusCode, c.status, c.code)
		}
	}
}
