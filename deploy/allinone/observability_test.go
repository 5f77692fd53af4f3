package allinone_test

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/volcanion/tracking/deploy/allinone"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/testenv"
)

// The alert rules are valid and do what their unit tests say: promtool
// (Debian's prometheus package, installed by deploy/with-deps.sh).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: promtool is not installed (apt-get install prometheus; deploy/with-deps.sh installs it for make test), so the alert rules were not checked")
	}
	dir, _ := filepath.Abs("../prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every rule has a unit test that fires it or says it stays silent.
	var rules struct {
		Groups []struct{ Rules []struct{ Alert string } }
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		}
	}
	readYAML(t, filepath.Join(dir, "alerts.yml"), &rules)
	readYAML(t, filepath.Join(dir, "alerts_test.yml"), &tests)
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if !tested[r.Alert] {
				t.Errorf("alert %s has no case in alerts_test.yml", r.Alert)
			}
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// opsQueries are the PromQL expressions of the alert rules and the Grafana
// dashboard, each with where it comes from.
func opsQueries(t *testing.T) map[string]string {
	t.Helper()
	root, _ := filepath.Abs("../..")
	queries := map[string]string{}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	readYAML(t, filepath.Join(root, "deploy/prometheus/alerts.yml"), &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries[r.Expr] = "alert " + r.Alert
		}
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/volcanion-tracking.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries[q.Expr] = "panel " + p.Title
		}
	}
	return queries
}

var (
	metricRE   = regexp.MustCompile(`\btrk_[a-z0-9_]+`)
	byRE       = regexp.MustCompile(`\bby \(([^)]*)\)`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)\s*"`)
	scrapeLine = regexp.MustCompile(`(?m)^(trk_[a-z0-9_]+)(?:\{([^}]*)\})? `)
	labelRE    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

// checkOpsMetrics holds the alert rules and the dashboard to the metrics the
// running processes expose (their /metrics pages, concatenated): every
// metric they name exists, and every label they match or group by is one
// of its labels (instance and job are Prometheus's, le the histograms').
func checkOpsMetrics(t *testing.T, scrapes string) {
	t.Helper()
	labels := map[string]map[string]bool{} // metric -> its labels
	for _, m := range scrapeLine.FindAllStringSubmatch(scrapes, -1) {
		if labels[m[1]] == nil {
			labels[m[1]] = map[string]bool{}
		}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			labels[m[1]][l[1]] = true
		}
	}
	for q, where := range opsQueries(t) {
		names := metricRE.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s: no trk_ metric in %q", where, q)
		}
		known := map[string]bool{"instance": true, "job": true, "le": true}
		for _, n := range names {
			if labels[n] == nil {
				t.Errorf("%s: metric %s does not exist in the running system", where, n)
				continue
			}
			for l := range labels[n] {
				known[l] = true
			}
		}
		var used []string
		for _, m := range byRE.FindAllStringSubmatch(q, -1) {
			for _, l := range strings.Split(m[1], ",") {
				used = append(used, strings.TrimSpace(l))
			}
		}
		for _, m := range matcherRE.FindAllStringSubmatch(q, -1) {
			used = append(used, m[1])
		}
		for _, l := range used {
			if l != "" && !known[l] {
				t.Errorf("%s: label %q is on none of %v", where, l, slices.Compact(names))
			}
		}
	}
}

// scrape reads a /metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	hr, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer hr.Body.Close()
	body, _ := io.ReadAll(hr.Body)
	if hr.StatusCode != 200 {
		t.Fatalf("scrape %s: %d", url, hr.StatusCode)
	}
	return string(body)
}

// A busy port or a data directory that cannot be written fails the start at
// once, naming the setting (the NATS port used to time out after 30 s with
// "embedded server not ready").
func TestFailFast(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o600)
	// Through the binary's own flags, as an operator sets them.
	for _, c := range []struct {
		name, setting, value string
	}{
		{"NATS port busy", "-nats-listen", busy.Addr().String()},
		{"HTTP port busy", "-http-listen", busy.Addr().String()},
		{"HTTP port busy, long name", "-edge-http-listen", busy.Addr().String()},
		{"data dir under a file", "-data-dir", filepath.Join(file, "data")},
	} {
		b := allinone.NewBinary()
		b.Out = io.Discard
		fs := flag.NewFlagSet("volcanion", flag.ContinueOnError)
		b.RegisterFlags(fs)
		if err := fs.Parse([]string{"-data-dir", t.TempDir(), "-http-listen", "127.0.0.1:0", c.setting, c.value}); err != nil {
			t.Fatal(err)
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		start := time.Now()
		g := component.NewGroup(zerolog.Nop(), b.Components(zerolog.Nop())...)
		err := g.Start(context.Background(), 10*time.Second)
		if err == nil {
			g.Stop(context.Background())
			t.Fatalf("%s: started", c.name)
		}
		if !strings.Contains(err.Error(), c.setting+" ") || time.Since(start) > 10*time.Second {
			t.Errorf("%s: %v after %v, want an error naming %s at once", c.name, err, time.Since(start), c.setting)
		}
	}
}

// A hung registry replica (it takes health requests and never answers)
// does not slow readiness: it checks only what ingest needs. (The outside
// review measured 3 s a probe before, past Kubernetes' 1 s default.)
func TestReadyIgnoresAHungRegistry(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	nc, _ := testenv.ConnURL(t, s.app.NATSURL(), nats.UserCredentials(s.app.Creds("registry")))
	sub, err := nc.QueueSubscribe(subject.Registry("health"), "q", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	for i := range 10 {
		start := time.Now()
		s.must(200, "GET", "/health/ready", "", nil, nil)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("readiness %d took %v with a hung registry replica", i, d)
		}
	}
}

// A client's tracestate (up to 16 KB) is not copied onto the events it
// sends: only the trace id and parent travel.
func TestTracestateNotCarried(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	_, subs, key := s.tenant("tstate", "web")
	js, _ := streamOf(t, s)
	if _, err := js.PauseConsumer(context.Background(), subject.EventsStream, subject.WorkersConsumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", s.base+"/tracking", strings.NewReader(`{"subSystemCode":"web","eventType":"t"}`))
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	req.Header.Set("tracestate", "vendor="+strings.Repeat("v", 250))
	if r := s.send(req); r.Status != 202 {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	st, err := js.Stream(context.Background(), subject.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), subject.EventsPrefix+">")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("tracestate") != "" || !strings.Contains(m.Header.Get("traceparent"), "0af7651916cd43dd8448eb211c80319c") {
		t.Fatalf("the event's headers: %v", m.Header)
	}
	_ = subs["web"]
}
