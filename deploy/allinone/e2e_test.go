package allinone_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFlow drives the whole API: partner, sub-systems, key, single and bulk
// events, both reports; counts must equal what was accepted.
func TestFlow(t *testing.T) {
	s := start(t, t.TempDir())
	pid, subs, key := s.tenant("acme", "web", "ios")

	for i, typ := range []string{"page_view", "page_view", "click", "page_view", "click"} {
		var out struct {
			ID        string    `json:"id"`
			Status    string    `json:"status"`
			EventTime time.Time `json:"eventTime"`
		}
		s.must(202, "POST", "/tracking", key, ev("web", typ, "metadata", map[string]any{"n": i}, "userId", "u1"), &out)
		if out.ID == "" || out.Status != "Queued" || out.EventTime.IsZero() {
			t.Fatalf("ingest answer: %+v", out)
		}
	}
	var bulk []map[string]any
	for i := 0; i < 10; i++ {
		bulk = append(bulk, ev("ios", "screen_view", "anonymousId", fmt.Sprint("a", i)))
	}
	var br struct {
		Accepted, Rejected int
		Results            []struct {
			Index  int
			ID     string
			Status string
		}
	}
	s.must(202, "POST", "/tracking/bulk", key, map[string]any{"events": bulk}, &br)
	if br.Accepted != 10 || br.Rejected != 0 || len(br.Results) != 10 {
		t.Fatalf("bulk: %+v", br)
	}
	for i, r := range br.Results {
		if r.Index != i || r.Status != "Queued" || r.ID == "" {
			t.Fatalf("bulk result %d: %+v", i, r)
		}
	}

	rep := s.waitTotal(subs["web"], 5)
	if rep.EventsByType["page_view"] != 3 || rep.EventsByType["click"] != 2 || len(rep.EventsByType) != 2 {
		t.Fatalf("eventsByType: %v", rep.EventsByType)
	}
	var sum int64
	for i, p := range rep.TimeSeries {
		sum += p.Count
		if i > 0 && p.Timestamp.Sub(rep.TimeSeries[i-1].Timestamp) != time.Hour {
			t.Fatalf("series not hourly / zero-filled at %d: %v", i, p.Timestamp)
		}
	}
	if sum != 5 || len(rep.TimeSeries) < 2 {
		t.Fatalf("series sums to %d over %d points", sum, len(rep.TimeSeries))
	}
	s.waitTotal(subs["ios"], 10)

	// eventType filter, and the reference's startDate/endDate spelling.
	today := time.Now().UTC().Format(time.DateOnly)
	var filtered subReport
	r := s.must(200, "GET", "/reports/sub-systems/"+subs["web"]+"?startDate="+today+"&endDate="+today+"&eventType=click", "admin", nil, &filtered)
	if filtered.TotalEvents != 2 || len(filtered.EventsByType) != 1 || len(filtered.TimeSeries) != 24 {
		t.Fatalf("filtered: total %d, types %v, %d points", filtered.TotalEvents, filtered.EventsByType, len(filtered.TimeSeries))
	}
	if !strings.Contains(string(r.Data), `"timestamp":"`+today+`T00:00:00Z"`) {
		t.Fatalf("series timestamps must carry a zone: %.200s", r.Data)
	}

	var pr struct {
		TotalEvents   int64
		TopSubSystems []struct {
			SubSystemID   string
			SubSystemCode string
			EventCount    int64
		}
		TimeSeries []struct {
			Timestamp time.Time
			Count     int64
		}
	}
	s.must(200, "GET", "/reports/partners/"+pid, "admin", nil, &pr)
	if pr.TotalEvents != 15 || len(pr.TopSubSystems) != 2 || pr.TopSubSystems[0].SubSystemCode != "ios" ||
		pr.TopSubSystems[0].EventCount != 10 || pr.TopSubSystems[1].EventCount != 5 {
		t.Fatalf("partner report: %+v", pr)
	}
	if len(pr.TimeSeries) != 31 || pr.TimeSeries[30].Count != 15 {
		t.Fatalf("partner series: %d days, last %+v", len(pr.TimeSeries), pr.TimeSeries[len(pr.TimeSeries)-1])
	}

	s.must(200, "GET", "/health", "", nil, nil)
	var ready struct{ Checks map[string]string }
	s.must(200, "GET", "/health/ready", "", nil, &ready)
	for _, c := range []string{"nats", "eventStream"} {
		if ready.Checks[c] != "ok" {
			t.Fatalf("readiness %s: %q", c, ready.Checks[c])
		}
	}
	var deps struct {
		Checks                 map[string]string
		Ingest, Reports, Admin string
	}
	s.must(200, "GET", "/health/dependencies", "", nil, &deps)
	for _, c := range []string{"nats", "eventStream", "registry", "reporter"} {
		if deps.Checks[c] != "ok" {
			t.Fatalf("dependency %s: %q", c, deps.Checks[c])
		}
	}
	if deps.Ingest != "ready" || deps.Reports != "ready" || deps.Admin != "ready" {
		t.Fatalf("dependencies: %+v", deps)
	}
	if r := s.do("POST", "/tracking", key, ev("nope", "x")); r.Status != 400 {
		t.Fatalf("unknown sub-system: %d", r.Status)
	}
	hr, err := http.Get(strings.TrimSuffix(s.base, "/api/v1") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	for _, m := range []string{"trk_edge_events_accepted_total", `trk_edge_events_rejected_total{reason="validation_failed"}`, "trk_edge_publish_duration_seconds_bucket", "trk_consumer_pending_messages", "trk_http_requests_total"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// TestRestart stops the system right after a burst of 202s and starts it on
// the same data dir: every accepted event is counted exactly once.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	_, subs, key := s.tenant("burst", "web")
	var mu sync.Mutex
	accepted := 0
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				var batch []map[string]any
				for j := 0; j < 50; j++ {
					batch = append(batch, ev("web", "tick"))
				}
				r := s.do("POST", "/tracking/bulk", key, map[string]any{"events": batch})
				if r.Status != 202 {
					t.Errorf("bulk status %d %s", r.Status, r.code())
					return
				}
				var br struct{ Accepted int }
				json.Unmarshal(r.Data, &br)
				mu.Lock()
				accepted += br.Accepted
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.stop()

	s2 := start(t, dir)
	s2.waitTotal(subs["web"], int64(accepted))
	time.Sleep(300 * time.Millisecond) // nothing more may arrive late
	s2.waitTotal(subs["web"], int64(accepted))
	if accepted != 2000 {
		t.Fatalf("accepted %d of 2000", accepted)
	}
}

// TestDuplicate: the same client event id is stored once, whether JetStream's
// window or storage catches the repeat.
func TestDuplicate(t *testing.T) {
	s := start(t, t.TempDir())
	_, subs, key := s.tenant("dup", "web")
	var first, second struct {
		ID        string
		Duplicate bool
	}
	s.must(202, "POST", "/tracking", key, ev("web", "order", "id", "order-42"), &first)
	s.must(202, "POST", "/tracking", key, ev("web", "order", "id", "order-42"), &second)
	if first.ID != "order-42" || second.ID != "order-42" || first.Duplicate || !second.Duplicate {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	// Twice more inside one bulk, and another id to count.
	var br struct{ Accepted int }
	s.must(202, "POST", "/tracking/bulk", key, []any{ev("web", "order", "id", "order-42"), ev("web", "order", "id", "order-42"), ev("web", "order", "id", "order-43")}, &br)
	if br.Accepted != 3 {
		t.Fatalf("bulk accepted %d", br.Accepted)
	}
	s.waitTotal(subs["web"], 2)
	time.Sleep(200 * time.Millisecond)
	s.waitTotal(subs["web"], 2)
}

// TestDuplicateAfterWindow: past JetStream's de-duplication window, storage
// still stores a repeated id once.
func TestDuplicateAfterWindow(t *testing.T) {
	cfgDir := t.TempDir()
	s := startWith(t, cfgDir, func(c *config) { c.Bus.Duplicates = time.Second })
	_, subs, key := s.tenant("dup2", "web")
	s.must(202, "POST", "/tracking", key, ev("web", "order", "id", "late-1"), nil)
	// Resend until the stream no longer recognises the id: the window passed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var again struct{ Duplicate bool }
		s.must(202, "POST", "/tracking", key, ev("web", "order", "id", "late-1"), &again)
		if !again.Duplicate {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream still de-duplicates after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.must(202, "POST", "/tracking", key, ev("web", "order", "id", "late-2"), nil)
	s.waitTotal(subs["web"], 2)
	time.Sleep(200 * time.Millisecond)
	s.waitTotal(subs["web"], 2)
}
