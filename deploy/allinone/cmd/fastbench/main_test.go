package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The load loops count what the server answered, and the fixed-rate loop
// sends about rate x duration requests, counting latency from each one's
// due time: a server that stalls shows in the percentiles.
func TestLoops(t *testing.T) {
	var n atomic.Int64
	var stall atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n.Add(1)
		if stall.Load() {
			time.Sleep(50 * time.Millisecond)
		}
		w.WriteHeader(202)
	}))
	defer srv.Close()
	r := closedLoop(4, 300*time.Millisecond, srv.URL, "", []byte("{}"), 1)
	if int64(r.Statuses[202]) != n.Load() || r.EventsSec <= 0 || r.P50 <= 0 {
		t.Fatalf("closed loop: %+v, server saw %d", r, n.Load())
	}
	n.Store(0)
	f := fixedRate(4, time.Second, 200, []string{srv.URL}, "", []byte("{}"))
	if got := n.Load(); got < 180 || got > 220 || int64(f.Statuses[202]) != got {
		t.Fatalf("fixed rate 200/s for 1s sent %d (%v)", got, f.Statuses)
	}
	calm := f.P99
	stall.Store(true)
	f = fixedRate(2, time.Second, 100, []string{srv.URL}, "", []byte("{}"))
	if f.P99 < 50*time.Millisecond || f.P99 <= calm {
		t.Fatalf("a stalling server's p99 %s (calm %s): latency must count from the due time", f.P99, calm)
	}

	// Requests are spread over keys and URLs in turn.
	seen := map[string]int{}
	var mu sync.Mutex
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen["a "+r.Header.Get("X-Api-Key")]++
		mu.Unlock()
		w.WriteHeader(202)
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen["b "+r.Header.Get("X-Api-Key")]++
		mu.Unlock()
		w.WriteHeader(202)
	}))
	defer b.Close()
	closedLoopOver(4, 200*time.Millisecond, []string{a.URL, b.URL}, []string{"vtk_1", "vtk_2"}, []byte("{}"), 1)
	for _, k := range []string{"a vtk_1", "a vtk_2", "b vtk_1", "b vtk_2"} {
		if seen[k] == 0 {
			t.Fatalf("no request for %s: %v", k, seen)
		}
	}
}
