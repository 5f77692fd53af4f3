package allinone_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nodeModules installs testdata/segment-node's pinned packages (npm ci)
// into a cache directory, once per lockfile, and returns that directory
// with the test's scripts copied in. It skips, loudly, without Node.
func nodeModules(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("SKIPPED LOUDLY: node is not installed, so Segment's own SDKs were not tested (apt-get install nodejs npm)")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("SKIPPED LOUDLY: npm is not installed, so Segment's own SDKs were not tested (apt-get install npm)")
	}
	src := filepath.Join("testdata", name)
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "volcanion", name+"-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// TestSegmentNodeSDK: @segment/analytics-node, pointed at the edge, sends
// each kind of call and a batch of 1,000 messages. The first batch request
// is stored but its answer replaced by a 500, so the SDK sends it again:
// every message is still stored and counted once, with its type, ids and
// time.
func TestSegmentNodeSDK(t *testing.T) {
	dir := nodeModules(t, "segment-node")
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segnode", "server")
	key := s.segmentKey(p, subs["server"], nil)

	var batches, failed atomic.Int32
	host, _ := contractProxy(t, strings.TrimSuffix(s.base, "/api/v1"), func(r *http.Response) {
		if r.Request.URL.Path == "/v1/batch" && batches.Add(1) == 1 && r.StatusCode == 200 {
			// Stored, but the SDK hears a failure and must retry.
			failed.Add(1)
			r.Body.Close()
			body := []byte(`{"success":false,"error":{"code":"internal_error","message":"forced by the test"}}`)
			r.StatusCode, r.Status = 500, "500 Internal Server Error"
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			r.Header.Set("Content-Length", fmt.Sprint(len(body)))
		}
	})

	run := fmt.Sprintf("n%d", time.Now().UnixNano())
	cmd := exec.Command("node", "send.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOST="+host, "WRITE_KEY="+key, "RUN="+run)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node send.mjs: %v\n%s", err, out)
	}
	var res struct {
		Past   time.Time `json:"past"`
		Errors []string  `json:"errors"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || len(res.Errors) > 0 {
		t.Fatalf("node said: %s", out)
	}
	if failed.Load() != 1 || batches.Load() < 12 {
		t.Fatalf("%d batch requests, %d failed on purpose: the forced retry did not happen", batches.Load(), failed.Load())
	}

	rep := s.waitTotal(subs["server"], 1006)
	for typ, want := range map[string]int64{"Node Track": 1, "$identify": 1, "$page": 1, "$screen": 1, "$group": 1, "$alias": 1, "Bulk": 1000} {
		if rep.EventsByType[typ] != want {
			t.Fatalf("%s: %d, want %d (%v)", typ, rep.EventsByType[typ], want, rep.EventsByType)
		}
	}
	// The raw events: every bulk message once, under its messageId.
	seen := map[string]int{}
	var track *listedEvent
	q := url.Values{"from": {time.Now().UTC().Add(-2 * time.Hour).Format(time.RFC3339)}, "limit": {"1000"}}
	for page := 0; ; page++ {
		var pg eventsPage
		s.must(200, "GET", "/reports/partners/"+p+"/events?"+q.Encode(), "admin", nil, &pg)
		for i, e := range pg.Events {
			seen[e.ID]++
			if e.ID == run+"-track" {
				track = &pg.Events[i]
			}
		}
		if pg.NextCursor == "" || page > 5 {
			break
		}
		q.Set("cursor", pg.NextCursor)
	}
	for i := range 1000 {
		if id := fmt.Sprintf("%s-bulk-%d", run, i); seen[id] != 1 {
			t.Fatalf("%s listed %d times", id, seen[id])
		}
	}
	for _, c := range []string{"identify", "page", "screen", "group", "alias"} {
		if seen[run+"-"+c] != 1 {
			t.Fatalf("%s call listed %d times", c, seen[run+"-"+c])
		}
	}
	if track == nil || track.UserID != "n1" || track.Timestamp.Sub(res.Past).Abs() > 5*time.Second {
		t.Fatalf("the track call an hour ago: %+v (sent with timestamp %v)", track, res.Past)
	}
	if props, _ := track.Metadata["properties"].(map[string]any); props["a"] != 1.0 {
		t.Fatalf("track properties: %+v", track.Metadata)
	}
}

// TestSegmentBrowser: Segment's browser library (@segment/analytics-next,
// from npm, served by the test's page) in headless Chromium takes its
// settings from the edge, sends a page and a track call, and the page sends
// a beacon (navigator.sendBeacon, key in a text/plain body) as it is left:
// each is stored once.
func TestSegmentBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: chromium is not installed (deploy/with-deps.sh installs it for make test)")
	}
	dir := nodeModules(t, "segment-browser")
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segweb", "web")
	key := s.segmentKey(p, subs["web"], nil)
	// The browser reaches the edge through a proxy that holds every
	// answer, preflights included, to the API document.
	edge, checked := contractProxy(t, strings.TrimSuffix(s.base, "/api/v1"), nil)

	// The test's own site: the page and the library, from npm, on another
	// origin than the edge (the library calls the edge cross-origin).
	mux := http.NewServeMux()
	mux.Handle("/ajs/", http.StripPrefix("/ajs/", http.FileServer(http.Dir(filepath.Join(dir, "node_modules/@segment/analytics-next/dist/umd")))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join(dir, "page.html")) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	site := &http.Server{Handler: mux}
	go site.Serve(ln)
	t.Cleanup(func() { site.Close() })

	run := fmt.Sprintf("b%d", time.Now().UnixNano())
	page := "http://" + ln.Addr().String() + "/?" + url.Values{"edge": {edge}, "key": {key}, "run": {run}}.Encode()
	cmd := exec.Command("node", "drive.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PAGE="+page, "CHROMIUM="+chromium)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The browser stays open (the beacon may still be on its way) until the
	// checks below are done.
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("node drive.mjs: %v\n%s", err, stderr.String())
		}
	}()
	out, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("node drive.mjs said nothing: %v\n%s", err, stderr.String())
	}
	var res struct {
		Result struct {
			Page, Track string
			Failed      []string
			Error       string
		}
		Logs []string
		URLs []string
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || res.Result.Error != "" || len(res.Result.Failed) > 0 || res.Result.Page == "" {
		t.Fatalf("the page: %s", out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the browser said: %s", out)
		}
	})
	for _, u := range res.URLs {
		if !strings.HasPrefix(u, "http://127.0.0.1:") && u != "about:blank" {
			t.Fatalf("the page fetched %s: everything must come from the edge or the test's site", u)
		}
	}
	if len(res.Logs) > 0 {
		t.Fatalf("the browser logged errors: %v", res.Logs)
	}
	rep := s.waitTotal(subs["web"], 3)
	for typ, want := range map[string]int64{"$page": 1, "Browser Click": 1, "Beacon Unload": 1} {
		if rep.EventsByType[typ] != want {
			t.Fatalf("%s: %d, want %d (%v; browser: %v)", typ, rep.EventsByType[typ], want, rep.EventsByType, res.Logs)
		}
	}
	var pg eventsPage
	s.must(200, "GET", "/reports/partners/"+p+"/events?from="+time.Now().UTC().Add(-time.Hour).Format(time.RFC3339), "admin", nil, &pg)
	ids := map[string]bool{}
	for _, e := range pg.Events {
		ids[e.ID] = true
	}
	for _, id := range []string{res.Result.Page, res.Result.Track, run + "-beacon"} {
		if !ids[id] {
			t.Fatalf("message %s not stored under its messageId: %+v", id, pg.Events)
		}
	}
	// The settings, the calls and their preflights, the beacon.
	if n := checked.Load(); n < 4 {
		t.Fatalf("only %d answers to the browser went through the contract check", n)
	}
}

// contractProxy serves a reverse proxy to the edge at root and returns its
// root: every answer through it is held to the API document (checkContract),
// then modify, if not nil, may change it. checked counts the answers.
func contractProxy(t testing.TB, root string, modify func(*http.Response)) (proxyRoot string, checked *atomic.Int32) {
	t.Helper()
	edge, _ := url.Parse(root)
	checked = new(atomic.Int32)
	proxy := httputil.NewSingleHostReverseProxy(edge)
	proxy.ModifyResponse = func(r *http.Response) error {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		checkContract(t, root, r.Request, r.StatusCode, r.Header, body)
		checked.Add(1)
		if modify != nil {
			modify(r)
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), checked
}
