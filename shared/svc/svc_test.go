package svc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volcanion/tracking/shared/obs"
)

// The metrics listener serves the profiler beside /metrics and /healthz.
func TestDebugMux(t *testing.T) {
	srv := httptest.NewServer(DebugMux())
	defer srv.Close()
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/metrics":                       "go_goroutines",
		"/healthz":                       "ok",
	} {
		r, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d, no %q in %.200s", path, r.StatusCode, want, b)
		}
	}
}

// auto is pretty on a terminal only: a file or a pipe gets JSON, which
// costs a fifth less of the edge's throughput.
func TestLogFormat(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if obs.Pretty(obs.FormatAuto, f) || !obs.Pretty(obs.FormatPretty, f) || obs.Pretty(obs.FormatJSON, f) {
		t.Fatal("format resolution")
	}
	if _, err := Logger("info", "fancy"); err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Fatalf("a bad format: %v", err)
	}
	if _, err := Logger("loud", "json"); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Fatalf("a bad level: %v", err)
	}
}
