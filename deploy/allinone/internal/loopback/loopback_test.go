package loopback

import "testing"

func TestCheck(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://127.0.0.1:8080/api/v1": true, "http://localhost:8080": true, "http://[::1]:8080": true, "http://127.9.9.9": true,
		"http://10.0.0.1:8080": false, "http://192.168.1.10": false, "https://example.com": false, "http://0.0.0.0:8080": false,
	} {
		if err := Check(url); (err == nil) != ok {
			t.Errorf("%s: allowed=%v, want %v", url, err == nil, ok)
		}
	}
}
