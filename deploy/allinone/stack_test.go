package allinone_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/storage"
)

// stack drives deploy/stack.sh: the production topology as OS processes.
type stack struct {
	t   *testing.T
	env []string
	dir string
}

func (s *stack) sh(args ...string) {
	s.t.Helper()
	cmd := exec.Command("../stack.sh", args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := exec.Command("sh", "-c", "tail -n 20 "+s.dir+"/logs/*.log").CombinedOutput()
		s.t.Fatalf("stack.sh %v: %v\n%s\n%s", args, err, out, logs)
	}
}

// TestProductionTopology: 3 NATS nodes, Cassandra, Redis, 2 edges, 2
// workers, registry and reporter as separate processes. Load goes through
// both edges while a worker and a NATS node are killed with SIGKILL and
// restarted, then an edge and a worker are stopped with SIGTERM and restarted;
// afterwards every event that got a 202 is stored exactly once and
// counted once in the reports.
func TestProductionTopology(t *testing.T) {
	if os.Getenv("VT_CASSANDRA_HOSTS") == "" {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and Redis and sets it")
	}
	keyspace := fmt.Sprintf("vt_stack_%d", os.Getpid())
	s := &stack{t: t, dir: t.TempDir()}
	// Every process exports the spans of sampled traces over OTLP/gRPC to
	// this receiver; only requests that come with a sampled traceparent
	// start one, so the load below exports nothing.
	recv := startOTLP(t, "grpc")
	s.env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+recv.Addr, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_TRACES_SAMPLER=parentbased_always_off", "OTEL_BSP_SCHEDULE_DELAY=100")
	s.env = append(s.env, "STACK_DIR="+s.dir, "STACK_PORT_BASE=300", "STACK_KEYSPACE="+keyspace,
		"VT_CONSUMER_ACK_WAIT=3s", "VT_LOG_LEVEL=warn", // redeliveries after a kill come quickly
		"STACK_EDGE_FLAGS=-report-timeout="+reportTimeout.String())
	defer func() {
		s.sh("down")
		cl := gocql.NewCluster(strings.Split(os.Getenv("VT_CASSANDRA_HOSTS"), ",")...)
		if sess, err := cl.CreateSession(); err == nil {
			sess.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec()
			sess.Close()
		}
	}()
	began := time.Now().UTC()
	s.sh("up")
	token, _ := os.ReadFile(s.dir + "/admin-token")
	edges := []string{"http://127.0.0.1:8381/api/v1", "http://127.0.0.1:8382/api/v1"}
	// Every edge serves the console from its own binary.
	for _, e := range edges {
		hr, err := http.Get(strings.TrimSuffix(e, "/api/v1") + "/console/console.js")
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
		if hr.StatusCode != 200 || !strings.Contains(hr.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Fatalf("%s: the console answers %d", e, hr.StatusCode)
		}
	}

	call := func(method, url, auth string, body any, out any) int {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, url, bytes.NewReader(data))
		if strings.HasPrefix(auth, "vtk_") {
			req.Header.Set("X-Api-Key", auth)
		} else {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		checkContract(t, stackRoot, req, resp.StatusCode, resp.Header, raw) // every answer, as documented
		if out != nil {
			var env struct{ Data json.RawMessage }
			json.Unmarshal(raw, &env)
			json.Unmarshal(env.Data, out)
		}
		return resp.StatusCode
	}
	admin := strings.TrimSpace(string(token))
	var p, sub struct{ ID string }
	var key struct{ APIKey string }
	if st := call("POST", edges[0]+"/partners", admin, map[string]string{"code": "load", "name": "Load"}, &p); st != 201 {
		t.Fatalf("create partner: %d", st)
	}
	call("POST", edges[0]+"/partners/"+p.ID+"/sub-systems", admin, map[string]string{"code": "web", "name": "Web"}, &sub)
	call("POST", edges[0]+"/partners/"+p.ID+"/api-keys", admin, map[string]string{"name": "k"}, &key)
	tracesAcrossProcesses(t, recv, edges, admin, key.APIKey, p.ID, sub.ID)
	liveTailAcrossProcesses(t, call, edges, admin, key.APIKey, p.ID)

	// Load: 4 clients, bulks of 20 events with client ids, alternating edges, for 10 s.
	var mu sync.Mutex
	var retried atomic.Int64
	accepted := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var batch []map[string]any
				for j := 0; j < 20; j++ {
					batch = append(batch, map[string]any{"subSystemCode": "web", "eventType": "load", "id": fmt.Sprintf("c%d-%d-%d", c, n, j)})
				}
				// As a client should: what the edge could not confirm (a
				// timeout while a NATS node dies, an edge stopping) is sent
				// again with the same ids, and counted once.
				for attempt := 0; len(batch) > 0 && attempt < 20; attempt++ {
					var res struct {
						Results []struct {
							ID, Status string
							Error      *struct{ Code string }
						}
					}
					st := call("POST", edges[(n+attempt)%2]+"/tracking/bulk", key.APIKey, batch, &res)
					var again []map[string]any
					if len(res.Results) == 0 && (st == 0 || st == 429 || st >= 500) {
						again = batch
					}
					mu.Lock()
					for i, r := range res.Results {
						switch {
						case r.Status == "Queued":
							accepted[r.ID] = true
						case r.Error != nil && inDoubt[r.Error.Code] && i < len(batch):
							again = append(again, batch[i])
						}
					}
					mu.Unlock()
					batch = again
					retried.Add(int64(len(again)))
					if len(batch) > 0 {
						time.Sleep(100 * time.Millisecond) // the client's retry back-off
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	s.sh("stop", "workers1", "KILL")
	s.sh("stop", "nats2", "KILL")
	time.Sleep(3 * time.Second)
	s.sh("start", "nats2")
	s.sh("start", "workers1")
	time.Sleep(2 * time.Second)
	// Graceful restarts: SIGTERM lets the edge finish requests in flight and
	// the worker finish, write and ack its batch.
	s.sh("stop", "edge2")
	s.sh("stop", "workers2")
	s.sh("start", "workers2")
	s.sh("start", "edge2")
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if len(accepted) < 500 {
		t.Fatalf("only %d events were accepted: the load did not run", len(accepted))
	}

	// Every accepted event counted once in the report...
	var rep struct{ TotalEvents int }
	deadline := time.Now().Add(90 * time.Second)
	for {
		call("GET", edges[1]+"/reports/sub-systems/"+sub.ID, admin, nil, &rep)
		if rep.TotalEvents == len(accepted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if rep.TotalEvents != len(accepted) {
		t.Fatalf("report counts %d events, %d were accepted", rep.TotalEvents, len(accepted))
	}
	cachedAcrossProcesses(t, edges, admin, p.ID, sub.ID, len(accepted))
	// ...and stored exactly once, counted by id.
	cl := gocql.NewCluster(strings.Split(os.Getenv("VT_CASSANDRA_HOSTS"), ",")...)
	cl.Keyspace = keyspace
	sess, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stored := map[string]int{}
	for m := began.Truncate(time.Minute); !m.After(time.Now()); m = m.Add(time.Minute) {
		for b := 0; b < storage.Buckets; b++ {
			iter := sess.Query("SELECT id FROM events_by_partner_minute WHERE partner_id = ? AND minute = ? AND bucket = ?", p.ID, m, int8(b)).Iter()
			var id string
			for iter.Scan(&id) {
				stored[id]++
			}
			if err := iter.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id := range accepted {
		if stored[id] != 1 {
			t.Fatalf("accepted event %s is stored %d times", id, stored[id])
		}
	}
	t.Logf("%d events accepted through 2 edges with a worker and a NATS node killed (%d sent again after an answer in doubt); each stored once and counted once", len(accepted), retried.Load())

	// Revocation reaches every edge: a key cached on edge 2, revoked through
	// edge 1, is refused by edge 2 within a second (measured, 10 times).
	var lat []time.Duration
	for i := 0; i < 10; i++ {
		var k struct{ ID, APIKey string }
		call("POST", edges[0]+"/partners/"+p.ID+"/api-keys", admin, map[string]string{"name": fmt.Sprint("rev", i)}, &k)
		if st := call("POST", edges[1]+"/tracking", k.APIKey, map[string]string{"subSystemCode": "web", "eventType": "warm"}, nil); st != 202 {
			t.Fatalf("warm-up on edge 2: %d", st)
		}
		start := time.Now()
		if st := call("DELETE", edges[0]+"/partners/"+p.ID+"/api-keys/"+k.ID, admin, nil, nil); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		for call("POST", edges[1]+"/tracking", k.APIKey, map[string]string{"subSystemCode": "web", "eventType": "after"}, nil) != 401 {
			if time.Since(start) > time.Second {
				t.Fatalf("edge 2 still accepted a key revoked %v ago", time.Since(start))
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("revocation through edge 1 refused by edge 2 after: median %v, max %v (includes the revoke request)", lat[len(lat)/2], lat[len(lat)-1])

	// One key's limit is shared by both edge processes through Redis: 100
	// events/s, hammered through both edges for 4 s, lets through the refill
	// plus one full bucket, ±10%.
	var lk struct{ APIKey string }
	call("POST", edges[0]+"/partners/"+p.ID+"/api-keys", admin, map[string]any{"name": "limited", "rateLimit": 100}, &lk)
	var allowed, limited int64
	var lmu sync.Mutex
	var lwg sync.WaitGroup
	until := time.Now().Add(4 * time.Second)
	for c := 0; c < 6; c++ {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			for n := 0; time.Now().Before(until); n++ {
				st := call("POST", edges[n%2]+"/tracking", lk.APIKey, map[string]string{"subSystemCode": "web", "eventType": "limited"}, nil)
				lmu.Lock()
				switch st {
				case 202:
					allowed++
				case 429:
					limited++
				}
				lmu.Unlock()
			}
		}()
	}
	lwg.Wait()
	want := 100.0*4 + 100
	t.Logf("shared limit of 100/s over 4 s through 2 edges: %d allowed (ideal %v), %d refused with 429", allowed, want, limited)
	if d := float64(allowed) - want; d > want*0.1 || d < -want*0.1 || limited == 0 {
		t.Fatalf("%d allowed through two edges, want %v ±10%%", allowed, want)
	}

	reporters(t, s, call, edges, admin, sub.ID)

	// The alert rules and the dashboard name only metrics and labels these
	// running binaries expose (metrics listeners: 9102+base registry,
	// 9103/9106 reporters, 9104/9105 workers, 9107/9108 edges).
	var pages strings.Builder
	for _, url := range []string{"http://127.0.0.1:9407/metrics", "http://127.0.0.1:9408/metrics", "http://127.0.0.1:9402/metrics",
		"http://127.0.0.1:9403/metrics", "http://127.0.0.1:9404/metrics", "http://127.0.0.1:9405/metrics", "http://127.0.0.1:9406/metrics"} {
		pages.WriteString(scrape(t, url))
	}
	checkOpsMetrics(t, pages.String())
}

// inDoubt are the item errors after which an event may or may not be in
// the stream: the client sends it again with its id.
var inDoubt = map[string]bool{"timeout": true, "service_unavailable": true, "backpressure": true, "overloaded": true, "internal_error": true}

// stackRoot is the stack's first edge, whose API document the answers are
// checked against.
const stackRoot = "http://127.0.0.1:8381"

// reportTimeout is the edges' -report-timeout in the stack test.
const reportTimeout = 2 * time.Second

// reporters: two reporter processes share the load (one queue group); one
// killed, the other answers; one hung (SIGSTOP), a report answers 503
// timeout with Retry-After within the edge's -report-timeout, never a hang;
// none running, 503 service_unavailable at once; restarted, 200 again.
func reporters(t *testing.T, s *stack, call func(method, url, auth string, body any, out any) int, edges []string, admin, subID string) {
	report := func(edge string) (status int, code, retry string, took time.Duration) {
		start := time.Now()
		// Each time another range: not an answer from the cache.
		from := time.Now().UTC().Add(-time.Duration(1+time.Now().UnixNano()%1000) * time.Minute).Format(time.RFC3339Nano)
		req, _ := http.NewRequest("GET", edge+"/reports/sub-systems/"+subID+"?from="+from+"&granularity=minute", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		cl := &http.Client{Timeout: reportTimeout + 10*time.Second}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("report request: %v (after %v)", err, time.Since(start))
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		checkContract(t, stackRoot, req, resp.StatusCode, resp.Header, raw)
		var env struct{ Error *struct{ Code string } }
		json.Unmarshal(raw, &env)
		if env.Error != nil {
			code = env.Error.Code
		}
		return resp.StatusCode, code, resp.Header.Get("Retry-After"), time.Since(start)
	}
	s.sh("stop", "reporter1", "KILL")
	for i := range 10 {
		if st, code, _, _ := report(edges[i%2]); st != 200 {
			t.Fatalf("one reporter killed, the other running: %d %s", st, code)
		}
	}
	s.sh("signal", "reporter2", "STOP")
	st, code, retry, hung := report(edges[0])
	if st != 503 || code != "timeout" || retry == "" || hung > reportTimeout+3*time.Second {
		t.Fatalf("the only reporter hung: %d %s, Retry-After %q, after %v (timeout %v)", st, code, retry, hung, reportTimeout)
	}
	s.sh("signal", "reporter2", "CONT")
	s.sh("stop", "reporter2", "KILL")
	st, code, retry, took := report(edges[1])
	if st != 503 || code != "service_unavailable" || retry == "" || took > reportTimeout {
		t.Fatalf("no reporter running: %d %s, Retry-After %q, after %v", st, code, retry, took)
	}
	// No reporter: the edges stay ready (ingest does not need it), and the
	// dependencies route says what is down and what it takes with it.
	for _, edge := range edges {
		if st := call("GET", edge+"/health/ready", "", nil, nil); st != 200 {
			t.Fatalf("no reporter running: %s/health/ready answers %d, want 200 (ingest does not need the reporter)", edge, st)
		}
		var deps struct {
			Checks                 map[string]string
			Ingest, Reports, Admin string
		}
		// The route answers its last probe, probed again once 2 s old.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			deps.Checks = nil
			st := call("GET", edge+"/health/dependencies", "", nil, &deps)
			if st == 200 && deps.Checks["reporter"] != "ok" && deps.Checks["registry"] == "ok" && deps.Reports == "not ready" && deps.Ingest == "ready" && deps.Admin == "ready" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reporter running: dependencies %d %+v", st, deps)
			}
		}
	}
	s.sh("start", "reporter1")
	s.sh("start", "reporter2")
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, code, _, _ := report(edges[0])
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reporters restarted, reports still answer %d %s", st, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("reporters: one killed, served by the other; hung, 503 timeout after %v (limit %v); none, 503 service_unavailable after %v", hung, reportTimeout, took)
}

// tracesAcrossProcesses: one ingested event, one report and one admin
// change, each sent with a sampled traceparent, are each one trace across
// the processes: edge → NATS → workers, reporter or registry → storage.
func tracesAcrossProcesses(t *testing.T, recv *otlpReceiver, edges []string, admin, key, partnerID, subID string) {
	send := func(method, url, auth string, body any) (traceID string, status int) {
		tp, id := traceparent(t)
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, url, bytes.NewReader(data))
		if strings.HasPrefix(auth, "vtk_") {
			req.Header.Set("X-Api-Key", auth)
		} else {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		req.Header.Set("traceparent", tp)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkContract(t, stackRoot, req, resp.StatusCode, resp.Header, raw)
		return id, resp.StatusCode
	}
	change, st := send("POST", edges[0]+"/partners/"+partnerID+"/sub-systems", admin, map[string]string{"code": "traced", "name": "Traced"})
	if st != 201 {
		t.Fatalf("create a sub-system: %d", st)
	}
	report, st := send("GET", edges[1]+"/reports/sub-systems/"+subID, admin, nil)
	if st != 200 {
		t.Fatalf("report: %d", st)
	}
	// Into the new sub-system, so the load's counts below stay exact; the
	// edge hears of it through the registry's broadcast.
	var ingest string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ingest, st = send("POST", edges[0]+"/tracking", key, map[string]string{"subSystemCode": "traced", "eventType": "traced"}); st == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an event for the new sub-system: %d", st)
		}
	}
	recv.waitPath(t, ingest, []string{"POST /api/v1/tracking", "publish EVENTS", "store event", "storage WriteEvents"}, []string{"edge", "edge", "workers", "workers"})
	recv.waitPath(t, report, []string{"GET /api/v1/reports/sub-systems", "subsystem", "storage "}, []string{"edge", "reporter", "reporter"})
	recv.waitPath(t, change, []string{"POST /api/v1/partners/:id/sub-systems", "subsystems.create", "storage CreateSubSystem"}, []string{"edge", "registry", "registry"})
	t.Logf("traces across processes over OTLP/gRPC: ingest %s, report %s, admin change %s", ingest, report, change)
}

// liveTailAcrossProcesses: an event sent to one edge, stored by a workers
// process, shows in the live tail of the other edge.
func liveTailAcrossProcesses(t *testing.T, call func(method, url, auth string, body any, out any) int, edges []string, admin, key, partnerID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", edges[1]+"/reports/partners/"+partnerID+"/tail", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("tail on the second edge: %v %v", err, resp)
	}
	defer resp.Body.Close()
	// A sub-system of its own: the load below counts "web" exactly.
	if st := call("POST", edges[0]+"/partners/"+partnerID+"/sub-systems", admin, map[string]string{"code": "tail", "name": "Tail"}, nil); st != 201 {
		t.Fatalf("create the tail's sub-system: %d", st)
	}
	if st := call("POST", edges[0]+"/tracking", key, map[string]any{"id": "tailed-across", "subSystemCode": "tail", "eventType": "tail"}, nil); st != 202 {
		t.Fatalf("send: %d", st)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), `"id":"tailed-across"`) {
			return
		}
	}
	t.Fatalf("the second edge's tail did not show the event stored from the first (%v)", sc.Err())
}

// cachedAcrossProcesses: in production (two reporters, Redis), a report
// and a page of raw events over a given range, asked twice through
// different edges: the second comes from the cache, with cachedAt and
// Age, the same figures, and each says up to when its data is complete.
func cachedAcrossProcesses(t *testing.T, edges []string, admin, partnerID, subID string, total int) {
	t.Helper()
	from := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute).Format(time.RFC3339)
	to := time.Now().UTC().Add(2 * time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	get := func(edge, path string) (map[string]any, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", edge+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var env struct{ Data map[string]any }
		if resp.StatusCode != 200 || json.Unmarshal(raw, &env) != nil {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		return env.Data, resp.Header.Get("Age")
	}
	for _, path := range []string{
		"/reports/sub-systems/" + subID + "?from=" + from + "&to=" + to,
		"/reports/partners/" + partnerID + "/events?limit=100&from=" + from + "&to=" + to, // a page of 100 is kept; one over 128 KiB is not
	} {
		first, age := get(edges[0], path)
		if first["cachedAt"] != nil || age != "" || first["dataCompleteUntil"] == nil {
			t.Fatalf("%s, first: cachedAt %v, Age %q, dataCompleteUntil %v", path, first["cachedAt"], age, first["dataCompleteUntil"])
		}
		second, age := get(edges[1], path)
		if second["cachedAt"] == nil || age == "" || second["dataCompleteUntil"] != first["dataCompleteUntil"] {
			t.Fatalf("%s, again through another edge: cachedAt %v, Age %q, dataCompleteUntil %v (first %v)", path, second["cachedAt"], age,
				second["dataCompleteUntil"], first["dataCompleteUntil"])
		}
		n := second["totalEvents"]
		if evs, ok := second["events"].([]any); ok {
			n = float64(len(evs))
		}
		if n != float64(total) && !(strings.Contains(path, "/events") && n == float64(100) && total > 100) {
			t.Fatalf("%s: %v events from the cache, %d accepted", path, n, total)
		}
	}
}
