package allinone_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/dlqapi"
)

// Tests from an outside review of the Segment routes.

// @segment/analytics-node re-sends a batch with a new sentAt on every
// attempt: the retried message must keep its content (sentAt is not in the
// metadata), or it would be dead-lettered as an id taken by other content.
func TestSegmentRetryWithNewSentAt(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	p, subs, _ := s.tenant("segrv1", "web")
	key := s.segmentKey(p, subs["web"], nil)
	t0 := time.Now().UTC().Add(-time.Minute)
	batch := func(sentAt time.Time) map[string]any {
		return map[string]any{"sentAt": sentAt.Format(time.RFC3339Nano), "batch": []map[string]any{
			{"type": "track", "event": "E", "userId": "u", "messageId": "retry-1", "timestamp": t0.Format(time.RFC3339Nano)},
		}}
	}
	if r := s.segment("/v1/batch", key, "application/json", batch(t0.Add(time.Second))); r.Status != 200 {
		t.Fatalf("first: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 1)
	// The SDK's retry (it heard a 5xx or a timeout): same messages, new sentAt.
	if r := s.segment("/v1/batch", key, "application/json", batch(t0.Add(3*time.Second))); r.Status != 200 {
		t.Fatalf("retry: %d %s", r.Status, r.Raw)
	}
	// Once the workers have taken everything from the stream (a message is
	// dead-lettered before it is acked), nothing is dead-lettered.
	_, state := streamOf(t, s)
	for deadline := time.Now().Add(20 * time.Second); state().Msgs > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream never emptied")
		}
	}
	var page dlqapi.Page
	s.must(200, "GET", "/partners/"+p+"/dead-letters", "admin", nil, &page)
	if len(page.Items) > 0 {
		t.Fatalf("an SDK retry of a stored message was dead-lettered (reason %q): %d dead letters", page.Items[0].Reason, len(page.Items))
	}
	s.waitTotal(subs["web"], 1)
}

// A batch with more messages than the key may send in a second can never
// pass: it is answered 400 (not 429, which the SDK would retry for ever).
func TestSegmentBatchOverRate(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv2", "web")
	key := s.segmentKey(p, subs["web"], map[string]any{"rateLimit": 5})
	var msgs []map[string]any
	for i := range 6 {
		msgs = append(msgs, map[string]any{"type": "track", "event": "e", "userId": "u", "messageId": fmt.Sprint("rl-", i)})
	}
	r := s.segment("/v1/batch", key, "application/json", map[string]any{"batch": msgs})
	if r.Status != 400 || r.code() != "message_too_large" || !strings.Contains(r.Error.Message, "rate limit") {
		t.Fatalf("a batch the key can never send: %d %s", r.Status, r.Raw)
	}
}

// The README's curl example sent twice is two events: without a messageId
// each call gets a new id, as Segment gives.
func TestSegmentNoMessageIDTwice(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv3", "web")
	key := s.segmentKey(p, subs["web"], nil)
	body := []byte(`{"userId":"u1","event":"Order Completed","properties":{"revenue":12.5}}`)
	for i := range 2 {
		if r := s.segment("/v1/track", key, "application/json", body); r.Status != 200 || !r.Success {
			t.Fatalf("call %d: %d %s", i, r.Status, r.Raw)
		}
	}
	s.waitTotal(subs["web"], 2)
}

// The same messageId twice in one batch with other content: the second is
// refused, in its result, and the first stored.
func TestSegmentDuplicateIDInBatch(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv4", "web")
	key := s.segmentKey(p, subs["web"], nil)
	var res segResults
	r := s.segment("/v1/batch", key, "application/json", map[string]any{"batch": []map[string]any{
		{"type": "track", "event": "A", "userId": "u", "messageId": "dup-1"},
		{"type": "track", "event": "B", "userId": "u", "messageId": "dup-1"},
		{"type": "track", "event": "A", "userId": "u", "messageId": "dup-1"}, // the same message again: fine
	}})
	if err := json.Unmarshal(r.Data, &res); err != nil || r.Status != 200 || res.Accepted != 2 || res.Results[1].Error == nil || res.Results[1].Error.Code != "duplicate_event" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	rep := s.waitTotal(subs["web"], 1)
	if rep.EventsByType["A"] != 1 {
		t.Fatalf("stored %v, want the first", rep.EventsByType)
	}
}

// A batch of more than 500 messages, or whose context copied into each
// message would make it large, is refused whole.
func TestSegmentBatchAmplification(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv5", "web")
	key := s.segmentKey(p, subs["web"], nil)
	var msgs []map[string]any
	for i := range 600 {
		msgs = append(msgs, map[string]any{"type": "track", "event": "e", "messageId": fmt.Sprint("a", i)})
	}
	body, _ := json.Marshal(map[string]any{"context": map[string]any{"pad": strings.Repeat("x", 8<<10)}, "batch": msgs})
	if r := s.segment("/v1/batch", key, "application/json", body); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("600 messages: %d %.300s", r.Status, r.Raw)
	}
	body, _ = json.Marshal(map[string]any{"context": map[string]any{"pad": strings.Repeat("x", 8<<10)}, "batch": msgs[:200]})
	if r := s.segment("/v1/batch", key, "application/json", body); r.Status != 400 || r.code() != "message_too_large" || !strings.Contains(r.Error.Message, "context") {
		t.Fatalf("an 8 KB context copied into 200 messages: %d %.300s", r.Status, r.Raw)
	}
}

// A chunked body over the limit is not described as "-1 bytes".
func TestSegmentChunkedTooLargeMessage(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv7", "web")
	key := s.segmentKey(p, subs["web"], nil)
	raw, _ := json.Marshal(map[string]any{"event": "e", "userId": "u", "properties": map[string]any{"pad": strings.Repeat("x", 33<<10)}})
	pr, pw := io.Pipe()
	go func() { pw.Write(raw); pw.Close() }()
	req, _ := http.NewRequest("POST", strings.TrimSuffix(s.base, "/api/v1")+"/v1/track", pr)
	req.SetBasicAuth(key, "")
	r := s.send(req)
	if r.Status != 400 || strings.Contains(r.Error.Message, "-1 bytes") {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
}

// The settings endpoint's errors carry the CORS header, so the browser
// library can read why.
func TestSegmentSettingsErrorsCORS(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	root := strings.TrimSuffix(s.base, "/api/v1")
	hr, err := http.Get(root + "/v1/projects/vtk_nope/settings")
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 401 || hr.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("settings of a bad key: %d, Access-Control-Allow-Origin %q", hr.StatusCode, hr.Header.Get("Access-Control-Allow-Origin"))
	}
}

// An Authorization: Basic header with an empty user name does not hide a
// valid X-Api-Key.
func TestSegmentEmptyBasicThenAPIKey(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv9", "web")
	key := s.segmentKey(p, subs["web"], nil)
	req, _ := http.NewRequest("POST", strings.TrimSuffix(s.base, "/api/v1")+"/v1/track", strings.NewReader(`{"event":"e","userId":"u"}`))
	req.SetBasicAuth("", "")
	req.Header.Set("X-Api-Key", key)
	if r := s.send(req); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
}

// The settings route is logged and counted like every route, by its
// template: the write key in its path never reaches the logs.
func TestSegmentSettingsLogged(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv8", "web")
	key := s.segmentKey(p, subs["web"], nil)
	root := strings.TrimSuffix(s.base, "/api/v1")
	hr, err := http.Get(root + "/v1/projects/" + key + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	err = json.NewDecoder(hr.Body).Decode(&settings)
	hr.Body.Close()
	if hr.StatusCode != 200 || err != nil || settings["integrations"] == nil || settings["success"] != nil {
		t.Fatalf("settings: %d %v %v (want the library's shape, not the envelope)", hr.StatusCode, err, settings)
	}
	want := `"route":"/v1/projects/:writeKey/settings"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no request line for the settings route")
		}
	}
	if strings.Contains(s.logs.String(), key) {
		t.Fatal("the logs contain the write key")
	}
}

// A sentAt, timestamp or writeKey that is not a string is that field's
// error, not a whole request refused as invalid JSON.
func TestSegmentNonStringFields(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv9", "web")
	key := s.segmentKey(p, subs["web"], nil)
	r := s.segment("/v1/track", "", "text/plain", []byte(`{"writeKey":12,"event":"E","userId":"u"}`))
	if r.Status != 400 || r.code() != "validation_failed" || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != "writeKey" {
		t.Fatalf("writeKey 12: %d %s", r.Status, r.Raw)
	}
	var res struct {
		Accepted int
		Results  []struct {
			Error *struct {
				Code   string
				Fields []struct{ Field string }
			}
		}
	}
	r = s.segment("/v1/batch", key, "application/json", []byte(`{"batch":[
		{"type":"track","event":"ok","userId":"u","messageId":"ns-1"},
		{"type":"track","event":"E","userId":"u","messageId":"ns-2","timestamp":1700000000},
		{"type":"track","event":"E","userId":"u","messageId":"ns-3","originalTimestamp":{}},
		{"type":"track","event":"E","userId":"u","messageId":"ns-4","sentAt":true}]}`))
	if err := json.Unmarshal(r.Data, &res); err != nil || r.Status != 200 || res.Accepted != 1 {
		t.Fatalf("non-string times: %d %s", r.Status, r.Raw)
	}
	for i, field := range []string{"", "timestamp", "originalTimestamp", "sentAt"} {
		e := res.Results[i].Error
		if field == "" {
			if e != nil {
				t.Fatalf("message 0 refused: %s", r.Raw)
			}
			continue
		}
		if e == nil || e.Code != "validation_failed" || len(e.Fields) != 1 || e.Fields[0].Field != field {
			t.Fatalf("message %d: %s, want %s named", i, r.Raw, field)
		}
	}
	// The batch's own sentAt, not a string: every message says so.
	r = s.segment("/v1/batch", key, "application/json", []byte(`{"sentAt":5,"batch":[{"type":"track","event":"E","userId":"u","messageId":"ns-5"}]}`))
	if r.Status != 400 || !strings.Contains(string(r.Raw), `"sentAt"`) {
		t.Fatalf("batch sentAt 5: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 1)
}

// Tests from a second outside review.

// Bodies read before any key was checked (a beacon's key is in its body)
// are at most 64 KB and hold at most a share of the body budget: stalled
// anonymous uploads cannot make the edge answer 503 to keyed senders.
func TestSegmentKeylessBodiesCannotStarve(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.Edge.MaxInflightBodyBytes = c.Edge.MaxBulkBytes })
	p, subs, key := s.tenant("segrv10", "web")
	segKey := s.segmentKey(p, subs["web"], nil)
	root := strings.TrimSuffix(s.base, "/api/v1")
	if r := s.segment("/v1/b", "", "text/plain", []byte(`{"writeKey":"`+segKey+`","batch":[`+strings.Repeat(" ", 70<<10)+`]}`)); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("a keyless body over 64 KB: %d %s", r.Status, r.Raw)
	}
	stall := func() {
		c, err := net.Dial("tcp", strings.TrimPrefix(root, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST /v1/b HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", 64<<10)
		c.Write(append([]byte(`{"batch":[`), bytes.Repeat([]byte(" "), 60<<10)...))
	}
	// Far more stalled uploads than the keyless share holds (4 MiB / 8).
	for range 40 {
		stall()
	}
	share := float64((4 << 20) / 8)
	for deadline := time.Now().Add(10 * time.Second); gauge(t, s.base, "trk_edge_body_bytes_inflight") < share; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled uploads never filled the keyless share: %v bytes in flight", gauge(t, s.base, "trk_edge_body_bytes_inflight"))
		}
	}
	if got := gauge(t, s.base, "trk_edge_body_bytes_inflight"); got > share {
		t.Fatalf("keyless bodies hold %v bytes, more than their share of %v", got, share)
	}
	if r := s.do("POST", "/tracking", key, ev("web", "x")); r.Status != 202 {
		t.Fatalf("a keyed event while anonymous uploads stall: %d %s", r.Status, r.Raw)
	}
	if r := s.segment("/v1/track", segKey, "application/json", map[string]any{"event": "e", "userId": "u"}); r.Status != 200 {
		t.Fatalf("a Basic-auth call while anonymous uploads stall: %d %s", r.Status, r.Raw)
	}
	// Another keyless request gets 503 overloaded, with Retry-After.
	if r := s.segment("/v1/t", "", "text/plain", []byte(`{"writeKey":"`+segKey+`","event":"e","userId":"u","properties":{"p":"`+strings.Repeat("x", 20<<10)+`"}}`)); r.Status != 503 || r.code() != "overloaded" {
		t.Fatalf("a keyless request past the share: %d %s", r.Status, r.Raw)
	}
}

// RudderStack's Node SDK gzips every batch: a gzip body is inflated (within
// the limits, counted inflated).
func TestSegmentGzip(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv11", "web")
	key := s.segmentKey(p, subs["web"], nil)
	root := strings.TrimSuffix(s.base, "/api/v1")
	post := func(raw []byte) resp {
		req, _ := http.NewRequest("POST", root+"/v1/batch", bytes.NewReader(gzipped(raw)))
		req.SetBasicAuth(key, "")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		return s.send(req)
	}
	raw, _ := json.Marshal(map[string]any{"sentAt": time.Now().UTC().Format(time.RFC3339Nano),
		"batch": []map[string]any{{"type": "track", "event": "Gz", "userId": "u", "messageId": "gz-1"}}})
	if r := post(raw); r.Status != 200 {
		t.Fatalf("a gzip batch: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 1)
	// A bomb: small compressed, over 500 KB inflated.
	bomb, _ := json.Marshal(map[string]any{"batch": []map[string]any{{"type": "track", "event": "e", "userId": "u",
		"properties": map[string]string{"p": strings.Repeat("x", 2<<20)}}}})
	if r := post(bomb); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("a gzip bomb: %d %s", r.Status, r.Raw)
	}
	req, _ := http.NewRequest("POST", root+"/v1/batch", strings.NewReader(`{"batch":[]}`))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Encoding", "gzip")
	if r := s.send(req); r.Status != 400 || r.code() != "invalid_json" {
		t.Fatalf("gzip declared, plain sent: %d %s", r.Status, r.Raw)
	}
}

// What the stored event could not hold, or what the decoder would change,
// is refused at the edge, never answered 200 and then dead-lettered or
// merged: deep nesting, lone surrogates, invalid UTF-8; a field of the
// wrong type names the field in JSON's words.
func TestSegmentRefusedAtTheEdge(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv12", "web")
	key := s.segmentKey(p, subs["web"], nil)
	deep := strings.Repeat("[", 9999) + strings.Repeat("]", 9999)
	cases := []struct {
		name, body, code, field string
	}{
		{"deep properties", `{"event":"deep","userId":"u","messageId":"deep-1","properties":` + deep + `}`, "validation_failed", "body"},
		{"lone surrogate", `{"event":"Viewed \ud83d","userId":"u","messageId":"sur-1"}`, "validation_failed", "event"},
		{"bad UTF-8", "{\"event\":\"e\",\"userId\":\"u\",\"properties\":{\"p\":\"\xff\"}}", "validation_failed", "properties"},
		{"event a number", `{"event":5,"userId":"u"}`, "validation_failed", "event"},
		{"name an object", `{"name":{},"userId":"u"}`, "validation_failed", "name"},
	}
	for _, c := range cases {
		path := "/v1/track"
		if c.name == "name an object" {
			path = "/v1/page"
		}
		// A single call's answer is its message's error, fields and all.
		r := s.segment(path, key, "application/json", []byte(c.body))
		if r.Status != 400 || r.code() != c.code || len(r.Error.Fields) == 0 || r.Error.Fields[0].Field != c.field ||
			strings.Contains(r.Error.Fields[0].Message, "Go ") || strings.Contains(r.Error.Message, "struct") {
			t.Errorf("%s: %d %s, want %s naming %s", c.name, r.Status, r.Raw, c.code, c.field)
		}
	}
	// A batch's context with a lone surrogate: the batch is refused.
	r := s.segment("/v1/batch", key, "application/json", []byte(`{"context":{"x":"\udc00"},"batch":[{"type":"track","event":"e","userId":"u"}]}`))
	if r.Status != 400 || len(r.Error.Fields) == 0 || r.Error.Fields[0].Field != "context" {
		t.Fatalf("batch context with a lone surrogate: %d %s", r.Status, r.Raw)
	}
	// 10,000 line separators in a name are 30 KB sent, and stay 30 KB.
	body := []byte(`{"name":"` + strings.Repeat("\u2028", 10000) + `","userId":"u","messageId":"ls-1"}`)
	if r := s.segment("/v1/page", key, "application/json", body); r.Status != 200 {
		t.Fatalf("a 30 KB page call: %d %s", r.Status, r.Raw)
	}
	// Over 32 KB of metadata in one call: Segment's 400, not our 413.
	big := []byte(`{"event":"e","userId":"u","properties":{"p":"` + strings.Repeat(`\u00e9`, 5000) + `"},"context":{"c":"` + strings.Repeat("y", 6000) + `"}}`)
	if r := s.segment("/v1/track", key, "application/json", big); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("metadata over 32 KB: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 1)
}

// A batch whose context copied into each message would be large is refused
// before any copy: cheap, and 400 message_too_large as the README says.
func TestSegmentContextAmplificationIsCheap(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv13", "web")
	key := s.segmentKey(p, subs["web"], nil)
	var msgs []map[string]any
	for i := range 500 {
		msgs = append(msgs, map[string]any{"type": "track", "event": "e", "userId": "u", "messageId": fmt.Sprint("a", i)})
	}
	amp, _ := json.Marshal(map[string]any{"context": map[string]any{"pad": strings.Repeat("x", 460<<10)}, "batch": msgs})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := s.segment("/v1/batch", key, "application/json", amp)
	runtime.ReadMemStats(&after)
	if r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("an amplifying batch: %d %s", r.Status, r.Raw)
	}
	// The whole process (all-in-one, in this test) allocated less than a
	// few copies of the request; copying the context into every message
	// allocated 459 MB.
	if got := after.TotalAlloc - before.TotalAlloc; got > 40<<20 {
		t.Fatalf("refusing it allocated %d MB", got>>20)
	}
}

// ISO 8601 as libraries write it.
func TestSegmentTimeForms(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv14", "web")
	key := s.segmentKey(p, subs["web"], nil)
	day := time.Now().UTC().Add(-48 * time.Hour)
	at := day.Truncate(time.Second)
	forms := map[string]time.Time{
		at.Format("2006-01-02T15:04:05z"):                                   at,
		at.Format("2006-01-02 15:04:05Z07:00"):                              at,
		at.Format("2006-01-02t15:04:05.000Z"):                               at,
		at.In(time.FixedZone("", 19800)).Format("2006-01-02T15:04:05-0700"): at,
		day.Format("2006-01-02"):                                            time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC),
	}
	i := 0
	var ids []string
	want := map[string]time.Time{}
	for form, ts := range forms {
		id := fmt.Sprint("tf-", i)
		i++
		ids = append(ids, id)
		want[id] = ts
		if r := s.segment("/v1/track", key, "application/json", map[string]any{"event": "e", "userId": "u", "messageId": id, "timestamp": form}); r.Status != 200 {
			t.Fatalf("timestamp %q: %d %s", form, r.Status, r.Raw)
		}
	}
	var pg eventsPage
	for deadline := time.Now().Add(20 * time.Second); len(pg.Events) < len(ids) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		pg = eventsPage{}
		s.must(200, "GET", "/reports/partners/"+p+"/events?from="+day.Add(-24*time.Hour).Format("2006-01-02"), "admin", nil, &pg)
	}
	if len(pg.Events) != len(ids) {
		t.Fatalf("%d events listed, want %d", len(pg.Events), len(ids))
	}
	for _, e := range pg.Events {
		if w, ok := want[e.ID]; ok && !e.Timestamp.Equal(w) {
			t.Errorf("%s stored at %v, want %v", e.ID, e.Timestamp, w)
		}
	}
}

// The settings of a key that must sign are refused: a browser cannot sign.
func TestSegmentSettingsOfASigningKey(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv15", "web")
	key := s.segmentKey(p, subs["web"], map[string]any{"requireSignature": true})
	hr, err := http.Get(strings.TrimSuffix(s.base, "/api/v1") + "/v1/projects/" + key + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 401 {
		t.Fatalf("settings of a signing key: %d, want 401 signature_required", hr.StatusCode)
	}
}

// analytics-next sends a message again with the userId of an identify made
// meanwhile (normalize: json.userId || user.id()). Past the stream's window
// the stored message wins, as at Segment: the retry is a duplicate, not a
// dead letter.
func TestSegmentRetryGainsUserID(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.Bus.Duplicates = time.Second; c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	p, subs, _ := s.tenant("segrv16", "web")
	key := s.segmentKey(p, subs["web"], nil)
	at := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano)
	msg := map[string]any{"event": "Viewed", "anonymousId": "a1", "messageId": "gain-1", "timestamp": at}
	if r := s.segment("/v1/track", key, "application/json", msg); r.Status != 200 {
		t.Fatalf("first: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 1)
	msg["userId"] = "u1"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var res segResults
		r := s.segment("/v1/track", key, "application/json", msg)
		if r.Status != 200 || json.Unmarshal(r.Data, &res) != nil {
			t.Fatalf("retry: %d %s", r.Status, r.Raw)
		}
		if !strings.Contains(string(r.Data), `"duplicate":true`) {
			break // past the stream's window: the workers decide
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream still de-duplicates after 10s")
		}
	}
	_, state := streamOf(t, s)
	for deadline := time.Now().Add(20 * time.Second); state().Msgs > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream never emptied")
		}
	}
	var page dlqapi.Page
	s.must(200, "GET", "/partners/"+p+"/dead-letters", "admin", nil, &page)
	if len(page.Items) > 0 {
		t.Fatalf("a retried Segment message was dead-lettered: %q", page.Items[0].Reason)
	}
	s.waitTotal(subs["web"], 1)
	var pg eventsPage
	s.must(200, "GET", "/reports/partners/"+p+"/events", "admin", nil, &pg)
	if len(pg.Events) != 1 || pg.Events[0].UserID != "" {
		t.Fatalf("stored %+v, want the first message", pg.Events)
	}
}

// Behind a trusted proxy, the settings point the browser library at the
// host and scheme the proxy forwarded; from anyone else those headers are
// ignored.
func TestSegmentSettingsBehindAProxy(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		s := startWith(t, t.TempDir(), func(c *config) {
			if trusted {
				c.Edge.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			}
		})
		p, subs, _ := s.tenant("segrv17", "web")
		key := s.segmentKey(p, subs["web"], nil)
		root := strings.TrimSuffix(s.base, "/api/v1")
		req, _ := http.NewRequest("GET", root+"/v1/projects/"+key+"/settings", nil)
		req.Header.Set("X-Forwarded-Host", "track.example.com")
		req.Header.Set("X-Forwarded-Proto", "https")
		hr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var settings struct {
			Integrations map[string]struct{ APIHost, Protocol string } `json:"integrations"`
		}
		json.NewDecoder(hr.Body).Decode(&settings)
		hr.Body.Close()
		got := settings.Integrations["Segment.io"]
		want := struct{ APIHost, Protocol string }{"track.example.com/v1", "https"}
		if !trusted {
			want = struct{ APIHost, Protocol string }{strings.TrimPrefix(root, "http://") + "/v1", "http"}
		}
		if got != want {
			t.Fatalf("trusted proxy %v: settings point at %+v, want %+v", trusted, got, want)
		}
	}
}

// Tests from a third outside review.

// A keyless gzip body is held to 64 KB inflated too; other encodings are
// refused with 415, not misread as JSON.
func TestSegmentGzipKeyless(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("segrv18", "web")
	key := s.segmentKey(p, subs["web"], nil)
	root := strings.TrimSuffix(s.base, "/api/v1")
	post := func(body []byte, encoding string) resp {
		req, _ := http.NewRequest("POST", root+"/v1/batch", bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Content-Encoding", encoding)
		return s.send(req)
	}
	var batch []map[string]any
	for i := range 300 {
		batch = append(batch, map[string]any{"type": "track", "event": "e", "userId": "u", "messageId": fmt.Sprint("k", i),
			"properties": map[string]any{"pad": strings.Repeat("x", 1000)}})
	}
	big, _ := json.Marshal(map[string]any{"writeKey": key, "batch": batch})
	if r := post(gzipped(big), "gzip"); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("a keyless gzip body of %d bytes inflated: %d %s", len(big), r.Status, r.Raw)
	}
	small, _ := json.Marshal(map[string]any{"writeKey": key, "batch": batch[:1]})
	if r := post(gzipped(small), "x-gzip"); r.Status != 200 {
		t.Fatalf("a small keyless x-gzip body: %d %s", r.Status, r.Raw)
	}
	if r := post(small, "br"); r.Status != 415 || r.code() != "unsupported_media_type" {
		t.Fatalf("Content-Encoding br: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 1)
}

// gzipped is b, gzip-compressed.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}
