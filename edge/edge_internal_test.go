package edge

import (
	"flag"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestClientIP(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8, 192.168.1.1")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{TrustedProxies: proxies}}
	tests := []struct{ remote, xff, want string }{
		{"203.0.113.9:5000", "", "203.0.113.9"},
		{"203.0.113.9:5000", "1.2.3.4", "203.0.113.9"},             // untrusted peer: header ignored
		{"10.1.2.3:5000", "1.2.3.4", "1.2.3.4"},                    // trusted proxy
		{"10.1.2.3:5000", "6.6.6.6, 1.2.3.4, 10.9.9.9", "1.2.3.4"}, // rightmost untrusted hop; a forged left part is ignored
		{"192.168.1.1:80", "10.0.0.1, 10.0.0.2", "192.168.1.1"},    // all trusted: the peer
		{"10.1.2.3:5000", "garbage", "10.1.2.3"},                   // unparsable
		{"[::ffff:10.1.2.3]:5000", "2001:db8::1", "2001:db8::1"},   // mapped IPv4 peer, IPv6 client
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := s.clientIP(r); got != tc.want {
			t.Errorf("%s + %q: got %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := ParseProxies("10.0.0.0/33"); err == nil {
		t.Error("bad CIDR accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	// The admin credentials are admintoken's to check, when the edge is made.
	c := DefaultConfig()
	if _, err := New(c, nil, nil, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("no admin token: %v", err)
	}
	c.AdminTokens = []string{"short"}
	if _, err := New(c, nil, nil, zerolog.Nop()); err == nil {
		t.Fatal("short admin token accepted")
	}
	c.AdminTokens = []string{"0123456789abcdef"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.MaxBulkEvents = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-max-bulk-events") {
		t.Fatalf("max bulk events 0: %v", err)
	}
	// Registered under a prefix, an error names the prefixed flag.
	p := DefaultConfig()
	p.RegisterFlags("edge-", flag.NewFlagSet("x", flag.ContinueOnError))
	p.ReportTimeout = time.Millisecond
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "-edge-report-timeout") || !strings.Contains(err.Error(), "VT_EDGE_REPORT_TIMEOUT") {
		t.Fatalf("prefixed: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("héllo", 2); got != "h" {
		t.Fatalf("cut inside a rune: %q", got)
	}
	if got := truncate("abc", 5); got != "abc" {
		t.Fatal(got)
	}
}
