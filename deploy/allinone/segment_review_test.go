package allinone_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	s := startWith(t, t.TempDir(), func(c *config) { c.NATSListen = "127.0.0.1:-1" })
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
