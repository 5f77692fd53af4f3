package allinone_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/subject"
)

// TestConsole drives the admin console in Debian's chromium
// (testdata/console/console.mjs): sign-in, a partner, a sub-system and a
// key made through its forms, events seen in its live tail, its report
// chart read against the API, the key rotated and revoked and ingest then
// refused, dead letters, search and delete, a report key's read-only view;
// axe-core on every page at 1280 and 390 px. Screenshots of each page go
// to data/test-artifacts/console.
func TestConsole(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: chromium is not installed (deploy/with-deps.sh installs it for make test), so the console was not tested")
	}
	dir := nodeModules(t, "console")
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	root := strings.TrimSuffix(s.base, "/api/v1")

	// Two dead letters for the console to replay and discard: a direct
	// publisher's events without a timestamp can never be stored.
	dlqPartner, dlqSubs, _ := s.tenant("dlq-console", "web")
	js, _ := streamOf(t, s)
	for i := range 2 {
		bad := fmt.Sprintf(`{"id":"dead-%d","partnerId":%q,"subSystemId":%q,"eventType":"t"}`, i, dlqPartner, dlqSubs["web"])
		if _, err := js.Publish(t.Context(), subject.Events(dlqPartner, dlqSubs["web"]), []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "two dead letters", 15*time.Second, func() bool {
		var page dlqapi.Page
		s.must(200, "GET", "/partners/"+dlqPartner+"/dead-letters", "admin", nil, &page)
		return len(page.Items) == 2
	})

	// The page and its assets carry the policy: no inline script, nothing
	// from another host.
	for _, path := range []string{"/console/", "/console/console.js", "/console/console.css"} {
		if hr, err := http.Head(root + path); err != nil || hr.StatusCode != 200 {
			t.Fatalf("HEAD %s: %v %v", path, err, hr)
		}
		hr, err := http.Get(root + path)
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
		if csp := hr.Header.Get("Content-Security-Policy"); hr.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Fatalf("%s: %d, CSP %q", path, hr.StatusCode, csp)
		}
	}

	// Its time-zone arithmetic, around DST changes.
	consoleJS, _ := filepath.Abs("../../edge/console/console.js")
	zc := exec.Command("node", "zoned.mjs")
	zc.Dir, zc.Env = dir, append(os.Environ(), "CONSOLE_JS="+consoleJS)
	if out, err := zc.CombinedOutput(); err != nil {
		t.Fatalf("zoned.mjs: %v\n%s", err, out)
	}

	shots, _ := filepath.Abs("../../data/test-artifacts/console")
	cmd := exec.Command("node", "console.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ROOT="+root, "ADMIN="+s.admin, "CHROMIUM="+chromium, "SHOTS="+shots, "DLQ_PARTNER="+dlqPartner)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("console.mjs: %v\n%s\n%s", err, out, stderr.String())
	}
	var got struct {
		Failures []string
		Logs     []string
		Pages    map[string]json.RawMessage
		Requests int
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, f := range got.Failures {
		t.Errorf("console: %s", f)
	}
	for _, l := range got.Logs {
		t.Errorf("the browser logged: %s", l)
	}
	for _, name := range []string{"signin", "sub-systems", "keys", "tail", "reports", "revoke-dialog", "dead-letters", "partners", "report-key"} {
		if _, ok := got.Pages[name]; !ok {
			t.Errorf("page %s was not audited", name)
		}
		for _, w := range []string{"1280", "390"} {
			if _, err := os.Stat(filepath.Join(shots, name+"-"+w+".png")); err != nil && !t.Failed() {
				t.Errorf("no screenshot of %s at %s px: %v", name, w, err)
			}
		}
	}
	if t.Failed() {
		t.Logf("field error shown: %s; report: %s", got.Pages["fieldError"], got.Pages["report"])
	} else {
		t.Logf("screenshots in %s; %d API requests; report %s", shots, got.Requests, got.Pages["report"])
	}
}
