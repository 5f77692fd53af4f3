package allinone_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/deploy/allinone"
)

// metricsText fetches /metrics of the app at base (…/api/v1).
func metricsText(t *testing.T, base string) string {
	t.Helper()
	hr, err := http.Get(strings.TrimSuffix(base, "/api/v1") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	b, _ := io.ReadAll(hr.Body)
	return string(b)
}

// seriesOf counts the series of the metrics whose names start with prefix.
func seriesOf(text, prefix string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

func gauge(t *testing.T, base, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, base), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func randomWord(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'A' + byte(rand.IntN(26))
	}
	return string(b)
}

// TestSecMetricLabels: label values come only from bounded sets. 1,000
// requests with made-up methods (counted as "other") on made-up paths
// (counted by route template, "unmatched") add no series to /metrics.
func TestSecMetricLabels(t *testing.T) {
	s := start(t, t.TempDir())
	send := func() int {
		req, _ := http.NewRequest(randomWord(1+rand.IntN(200)), s.base+"/"+randomWord(1+rand.IntN(50)), nil)
		if rand.IntN(2) == 0 {
			req.URL.Path = "/api/v1/partners" // a route that exists: 405
		}
		hr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, hr.Body)
		hr.Body.Close()
		return hr.StatusCode
	}
	for send() != 404 { // one of each kind first: their series exist before counting
	}
	for send() != 405 {
	}
	before := metricsText(t, s.base)
	for i := 0; i < 1000; i++ {
		if st := send(); st != 404 && st != 405 {
			t.Fatalf("made-up method: %d", st)
		}
	}
	after := metricsText(t, s.base)
	for _, m := range []string{"trk_http_requests_total", "trk_http_request_duration_seconds_bucket"} {
		if b, a := seriesOf(before, m), seriesOf(after, m); a != b || b == 0 {
			t.Errorf("%s: %d series before, %d after 1,000 made-up methods", m, b, a)
		}
	}
	if !strings.Contains(after, `trk_http_requests_total{method="other",route="unmatched",status="405"}`) {
		t.Error("made-up methods are not counted as other")
	}
	if len(after) > len(before)+1024 {
		t.Errorf("/metrics grew from %d to %d bytes", len(before), len(after))
	}
}

// TestSecBodyBudget: the body bytes held by requests in flight are capped
// (-max-inflight-body-bytes); beyond it a request is answered 503
// overloaded with Retry-After before its body is read, and the budget is
// given back when requests end.
func TestSecBodyBudget(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.Edge.MaxInflightBodyBytes = c.Edge.MaxBulkBytes })
	_, subs, key := s.tenant("budget", "web")
	if v := gauge(t, s.base, "trk_edge_body_bytes_inflight"); v != 0 {
		t.Fatalf("%v bytes in flight at rest", v)
	}
	// Slow clients: each declares the largest bulk and trickles a few bytes.
	// They hold what they sent, not what they declared, so they cannot fill
	// the budget and lock everyone else out.
	var slow []func()
	for i := 0; i < 40; i++ {
		slow = append(slow, slowBulk(s.base, key, []byte(`[{"subSystemCode":"web",`)))
	}
	// Each wait its own deadline: under -race on two busy cores, one
	// shared by all three ran out.
	deadline := time.Now().Add(30 * time.Second)
	for gauge(t, s.base, "trk_edge_body_bytes_inflight") < 40*4<<10 {
		if time.Now().After(deadline) {
			t.Fatal("the slow clients' bodies were never being read")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := gauge(t, s.base, "trk_edge_body_bytes_inflight"); v > 40*4<<10 {
		t.Fatalf("40 slow clients that sent a few bytes each hold %v bytes of the budget", v)
	}
	s.must(202, "POST", "/tracking", key, ev("web", "x"), nil) // others are served
	for _, giveUp := range slow {
		giveUp()
	}

	// A bulk of the largest size that stops after 3 MiB: it holds the whole
	// budget (its buffer has grown to the declared 4 MiB), so others are
	// turned away until it ends.
	giveUp := slowBulk(s.base, key, append([]byte(`[{"subSystemCode":"web","eventType":"`), bytes.Repeat([]byte("x"), 3<<20)...))
	defer giveUp()
	deadline = time.Now().Add(30 * time.Second)
	for gauge(t, s.base, "trk_edge_body_bytes_inflight") < 4<<20 {
		if time.Now().After(deadline) {
			t.Fatal("the large bulk never reserved its bytes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := s.do("POST", "/tracking", key, ev("web", "x"))
	expectCode(t, r, 503, "overloaded")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 overloaded without Retry-After")
	}
	expectCode(t, s.do("POST", "/tracking/bulk", key, []any{ev("web", "x")}), 503, "overloaded")

	giveUp() // the slow client gives up
	deadline = time.Now().Add(30 * time.Second)
	for gauge(t, s.base, "trk_edge_body_bytes_inflight") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the budget was not given back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.must(202, "POST", "/tracking", key, ev("web", "x"), nil)
	s.waitTotal(subs["web"], 2) // this one, and the one served beside the slow clients
}

// TestSecChild is the all-in-one run as a child process by
// TestSecThrottledBulkMemory, so that its memory is its own.
func TestSecChild(t *testing.T) {
	dir := os.Getenv("VT_SEC_CHILD_DIR")
	if dir == "" {
		t.Skip("the child process of TestSecThrottledBulkMemory")
	}
	cfg := allinone.DefaultConfig()
	cfg.DataDir, cfg.Edge.Listen = dir, "127.0.0.1:0"
	if os.Getenv("VT_SEC_CHILD_NATS") != "" {
		cfg.NATS.Host, cfg.NATS.Port = "127.0.0.1", -1
	}
	cfg.Edge.RateLimit = 0
	app, err := allinone.Start(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	nu := app.NATSURL()
	if nu == "" {
		nu = "-"
	}
	fmt.Printf("CHILD %s %s %s %s\n", app.Addr(), app.AdminToken, nu, app.AuthDir)
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
}

// child is the all-in-one running as a child process (TestSecChild).
type child struct {
	cmd                         *exec.Cmd
	addr, token, natsURL, auths string
}

// startChild runs the all-in-one in a child process, with a NATS port on
// natsListen when it is not empty, and stops it when the test ends.
func startChild(t testing.TB, natsListen string) child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VT_SEC_CHILD_DIR="+t.TempDir(), "VT_SEC_CHILD_NATS="+natsListen)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close() // the child closes the app and exits
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 5 && f[0] == "CHILD" {
				ready <- f[1:]
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case f := <-ready:
		return child{cmd: cmd, addr: f[0], token: f[1], natsURL: strings.TrimPrefix(f[2], "-"), auths: f[3]}
	case <-exited:
		t.Fatal("the child exited before serving")
	case <-time.After(60 * time.Second):
		t.Fatal("the child did not start")
	}
	return child{}
}

// vmHWM is a process's peak resident set, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestSecThrottledBulkMemory: 120 concurrent 4 MiB bulks from a key
// limited to 1 event/s keep the edge's peak RSS under 200 MB: a key with
// no token left costs no body read (the issue measured 36 → 978 MB). The
// all-in-one runs as a child process; its peak is read from
// /proc/<pid>/status (VmHWM).
func TestSecThrottledBulkMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 480 MB over loopback")
	}
	c := startChild(t, "")
	addr, token, cmd := c.addr, c.token, c.cmd
	s := &sys{t: t, logs: &lockedBuffer{}, base: "http://" + addr + "/api/v1", admin: token}
	a, _, _ := s.tenant("mem", "web")
	k := s.key(a, map[string]any{"rateLimit": 1})

	// 500 events of about 8 KiB: a bulk just under the 4 MiB limit.
	pad := strings.Repeat("p", (4<<20)/500-64)
	events := make([]map[string]any, 500)
	for i := range events {
		events[i] = ev("web", "big", "metadata", map[string]string{"pad": pad})
	}
	body, _ := json.Marshal(events)
	if len(body) > 4<<20 || len(body) < 4<<20-64<<10 {
		t.Fatalf("bulk of %d bytes", len(body))
	}
	before := vmHWM(t, cmd.Process.Pid)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 120; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", s.base+"/tracking/bulk", bytes.NewReader(body))
			req.Header.Set("X-Api-Key", k.APIKey)
			st := -1 // the edge may close the connection on a body it will not read
			if hr, err := client.Do(req); err == nil {
				io.Copy(io.Discard, hr.Body)
				hr.Body.Close()
				st = hr.StatusCode
			}
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	after := vmHWM(t, cmd.Process.Pid)
	t.Logf("child peak RSS (VmHWM): %d MB before, %d MB after 120 concurrent 4 MiB bulks; answers %v", before>>20, after>>20, statuses)
	// No 503 overloaded: had the edge read these bodies, they would have
	// filled the body budget (that bound alone measured 171 MB here).
	if statuses[429] == 0 || statuses[202] > 0 || statuses[503] > 0 {
		t.Fatalf("answers %v: want 429s, and neither 202 nor 503", statuses)
	}
	// Growth, not the total: the process's resting size moves with what it
	// links and how its heap was last collected (130 MB here), while
	// reading these bodies would add their budget and decoding, 171 MB.
	if after-before > 100e6 {
		t.Fatalf("the edge's peak RSS grew by %d MB (%d to %d), over 100 MB", (after-before)>>20, before>>20, after>>20)
	}
	s.must(200, "GET", "/health", "", nil, nil) // still serving
}

// slowBulk starts a bulk that declares the largest body, sends first, and
// then nothing more until giveUp (idempotent) ends it.
func slowBulk(base, key string, first []byte) (giveUp func()) {
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/tracking/bulk", pr)
	req.ContentLength = 4 << 20
	req.Header.Set("X-Api-Key", key)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if hr, err := http.DefaultClient.Do(req); err == nil {
			hr.Body.Close()
		}
	}()
	go pw.Write(first)
	return func() { pw.CloseWithError(io.ErrUnexpectedEOF); <-done }
}
