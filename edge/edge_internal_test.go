package edge

import (
	"net/http/httptest"
	"strings"
	"testing"
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
	c := DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("no admin token: %v", err)
	}
	c.AdminTokens = []string{"short"}
	if c.Validate() == nil {
		t.Fatal("short admin token accepted")
	}
	c.AdminTokens = []string{"0123456789abcdef"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.MaxBulkEvents = 0
	if c.Validate() == nil {
		t.Fatal("max bulk events 0 accepted")
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
