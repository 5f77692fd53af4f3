package allinone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/subject"
)

// segmentKey creates a key bound to sub-system sub (a Segment source).
func (s *sys) segmentKey(partnerID, sub string, extra map[string]any) string {
	s.t.Helper()
	body := map[string]any{"name": "segment", "subSystemId": sub}
	for k, v := range extra {
		body[k] = v
	}
	var k struct{ APIKey string }
	s.must(201, "POST", "/partners/"+partnerID+"/api-keys", "admin", body, &k)
	return k.APIKey
}

// segment posts a Segment call the way the libraries do: the write key as
// Basic auth user name, unless key is "" (then it must be in the body).
func (s *sys) segment(path, key, contentType string, body any) resp {
	s.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	root := strings.TrimSuffix(s.base, "/api/v1")
	req, _ := http.NewRequest("POST", root+path, bytes.NewReader(raw))
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	req.Header.Set("Content-Type", contentType)
	return s.send(req)
}

type segResults struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Results  []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  *struct {
			Code string `json:"code"`
		} `json:"error"`
	} `json:"results"`
}

// TestSegmentAPI: the /v1 routes take Segment's calls with a bound key in
// Basic auth or in the body, map each call onto an event as the README's
// table says, count a re-sent batch once, and answer errors as Segment's
// libraries expect.
func TestSegmentAPI(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, unbound := s.tenant("seg", "web")
	key := s.segmentKey(p, subs["web"], nil)

	// An unbound key is refused with what to do about it.
	r := s.segment("/v1/track", unbound, "application/json", map[string]any{"event": "x", "userId": "u"})
	if r.Status != 400 || r.code() != "key_not_bound" || !strings.Contains(r.Error.Message, "bound") {
		t.Fatalf("unbound key: %d %s", r.Status, r.Raw)
	}
	// No key at all, and a bad one.
	if r := s.segment("/v1/track", "", "application/json", map[string]any{"event": "x", "userId": "u"}); r.Status != 401 || r.code() != "api_key_required" {
		t.Fatalf("no key: %d %s", r.Status, r.Raw)
	}
	if r := s.segment("/v1/track", "vtk_nope", "application/json", map[string]any{"event": "x", "userId": "u"}); r.Status != 401 {
		t.Fatalf("bad key: %d %s", r.Status, r.Raw)
	}

	// The settings Segment's browser library loads first point it here.
	root := strings.TrimSuffix(s.base, "/api/v1")
	for k, want := range map[string]int{key: 200, unbound: 400, "vtk_nope": 401} {
		hr, err := http.Get(root + "/v1/projects/" + url.PathEscape(k) + "/settings")
		if err != nil {
			t.Fatal(err)
		}
		var settings struct {
			Integrations map[string]struct{ APIHost, Protocol string } `json:"integrations"`
		}
		err = json.NewDecoder(hr.Body).Decode(&settings)
		hr.Body.Close()
		if hr.StatusCode != want || err != nil {
			t.Fatalf("settings of %.12s…: %d (%v), want %d", k, hr.StatusCode, err, want)
		}
		if want == 200 && (settings.Integrations["Segment.io"].APIHost != strings.TrimPrefix(root, "http://")+"/v1" || settings.Integrations["Segment.io"].Protocol != "http") {
			t.Fatalf("settings: %+v", settings)
		}
	}

	now := time.Now().UTC()
	skewed := now.Add(3 * time.Hour) // the device's clock is 3 h ahead
	calls := []struct {
		path string
		body map[string]any
		typ  string
	}{
		{"/v1/track", map[string]any{"messageId": "t-1", "userId": "u1", "event": "Order Completed", "properties": map[string]any{"revenue": 12.5}}, "Order Completed"},
		{"/v1/identify", map[string]any{"messageId": "m-identify", "userId": "u1", "traits": map[string]any{"plan": "pro"}}, "$identify"},
		{"/v1/page", map[string]any{"messageId": "m-page", "anonymousId": "a1", "name": "Home", "properties": map[string]any{"path": "/"}}, "$page"},
		{"/v1/screen", map[string]any{"messageId": "m-screen", "userId": 42, "name": "Settings"}, "$screen"},
		{"/v1/group", map[string]any{"messageId": "m-group", "userId": "u1", "groupId": "g1", "traits": map[string]any{"name": "Acme"}}, "$group"},
		{"/v1/alias", map[string]any{"messageId": "m-alias", "userId": "u1", "previousId": "a1",
			// Clock skew: sent 10 minutes after the call, by a clock 3 h ahead.
			"timestamp": skewed.Add(-10 * time.Minute).Format(time.RFC3339Nano), "sentAt": skewed.Format(time.RFC3339Nano)}, "$alias"},
	}
	for _, c := range calls {
		if r := s.segment(c.path, key, "application/json", c.body); r.Status != 200 || !r.Success {
			t.Fatalf("%s: %d %s", c.path, r.Status, r.Raw)
		}
	}
	// sendBeacon: text/plain, the write key in the body, to the browser
	// library's short path.
	beacon := map[string]any{"writeKey": key, "batch": []map[string]any{{"type": "track", "event": "Unload", "messageId": "m-beacon", "anonymousId": "a1"}}}
	if r := s.segment("/v1/b", "", "text/plain;charset=UTF-8", beacon); r.Status != 200 {
		t.Fatalf("beacon: %d %s", r.Status, r.Raw)
	}
	// A batch with good and bad messages: the good ones are queued, the bad
	// ones listed; sent again, nothing is counted twice.
	batch := map[string]any{"sentAt": now.Format(time.RFC3339Nano), "context": map[string]any{"library": map[string]any{"name": "test"}}, "batch": []map[string]any{
		{"type": "track", "event": "Signed Up", "messageId": "b-1", "userId": "u2"},
		{"type": "track", "messageId": "b-2", "userId": "u2"}, // no event name
		{"type": "nonsense", "messageId": "b-3", "userId": "u2"},
		{"type": "page", "messageId": "b-4", "userId": "u2", "name": "Pricing", "timestamp": "yesterday"},
		{"type": "identify", "messageId": "id with spaces/slash", "userId": "u2"}, // not one of our ids: a digest of it
	}}
	for round := range 2 {
		var res segResults
		r := s.segment("/v1/import", key, "application/json", batch)
		if r.Status != 200 || json.Unmarshal(r.Data, &res) != nil {
			t.Fatalf("batch round %d: %d %s", round, r.Status, r.Raw)
		}
		if res.Accepted != 2 || res.Rejected != 3 || res.Results[1].Error == nil || res.Results[1].Error.Code != "validation_failed" ||
			res.Results[2].Status != "Rejected" || res.Results[3].Status != "Rejected" || !strings.HasPrefix(res.Results[4].ID, "seg-") {
			t.Fatalf("batch round %d: %s", round, r.Raw)
		}
	}
	rep := s.waitTotal(subs["web"], 9)
	for typ, want := range map[string]int64{"Order Completed": 1, "$identify": 2, "$page": 1, "$screen": 1, "$group": 1, "$alias": 1, "Unload": 1, "Signed Up": 1} {
		if rep.EventsByType[typ] != want {
			t.Fatalf("%s: %d, want %d (%v)", typ, rep.EventsByType[typ], want, rep.EventsByType)
		}
	}
	// The raw events: ids, users, metadata, and the skew-corrected time.
	var pg eventsPage
	s.must(200, "GET", "/reports/partners/"+p+"/events?"+url.Values{"from": {now.Add(-2 * time.Hour).Format(time.RFC3339)}}.Encode(), "admin", nil, &pg)
	byID := map[string]int{}
	for i, e := range pg.Events {
		byID[e.ID] = i
	}
	for _, id := range []string{"t-1", "m-identify", "m-page", "m-screen", "m-group", "m-alias", "m-beacon", "b-1"} {
		if _, ok := byID[id]; !ok {
			t.Fatalf("event %s not listed: %+v", id, pg.Events)
		}
	}
	screen := pg.Events[byID["m-screen"]]
	if screen.UserID != "42" || screen.Metadata["name"] != "Settings" {
		t.Fatalf("screen: %+v", screen)
	}
	track := pg.Events[byID["t-1"]]
	if props, _ := track.Metadata["properties"].(map[string]any); props["revenue"] != 12.5 {
		t.Fatalf("track metadata: %+v", track.Metadata)
	}
	signed := pg.Events[byID["b-1"]]
	if c, _ := signed.Metadata["context"].(map[string]any); c["library"] == nil {
		t.Fatalf("the batch's context is not kept: %+v", signed.Metadata)
	}
	alias := pg.Events[byID["m-alias"]]
	if want := now.Add(-10 * time.Minute); alias.Timestamp.Before(want.Add(-30*time.Second)) || alias.Timestamp.After(want.Add(30*time.Second)) {
		t.Fatalf("alias at %v: Segment's rule puts it 10 minutes before it was received (%v)", alias.Timestamp, want)
	}
	if alias.Metadata["previousId"] != "a1" {
		t.Fatalf("alias metadata: %+v", alias.Metadata)
	}
}

// TestSegmentLimits: Segment's limits answer 400 (as Segment does), a key
// over its rate 429 with Retry-After, a body that is not JSON 400; none
// stores anything.
func TestSegmentLimits(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, _ := s.tenant("seglim", "web")
	key := s.segmentKey(p, subs["web"], nil)
	big := strings.Repeat("x", 33<<10)
	if r := s.segment("/v1/track", key, "application/json", map[string]any{"event": "e", "userId": "u", "properties": map[string]any{"pad": big}}); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("33 KB message: %d %s", r.Status, r.Raw)
	}
	var msgs []map[string]any
	for i := range 20 {
		msgs = append(msgs, map[string]any{"type": "track", "event": "e", "userId": "u", "messageId": fmt.Sprint("big-", i), "properties": map[string]any{"pad": big[:30<<10]}})
	}
	if r := s.segment("/v1/batch", key, "application/json", map[string]any{"batch": msgs}); r.Status != 400 || r.code() != "message_too_large" {
		t.Fatalf("600 KB batch: %d %.300s", r.Status, r.Raw)
	}
	if r := s.segment("/v1/batch", key, "application/json", []byte(`{"batch":[`)); r.Status != 400 || r.code() != "invalid_json" {
		t.Fatalf("not JSON: %d %s", r.Status, r.Raw)
	}
	// Every other rule of our keys holds: scopes and signing.
	reportOnly := s.segmentKey(p, subs["web"], map[string]any{"scopes": []string{"report"}})
	if r := s.segment("/v1/track", reportOnly, "application/json", map[string]any{"event": "e", "userId": "u"}); r.Status != 403 || r.code() != "scope_missing" {
		t.Fatalf("report-only key: %d %s", r.Status, r.Raw)
	}
	signed := s.segmentKey(p, subs["web"], map[string]any{"requireSignature": true})
	if r := s.segment("/v1/track", signed, "application/json", map[string]any{"event": "e", "userId": "u"}); r.Status != 401 || r.code() != "signature_required" {
		t.Fatalf("unsigned request of a signing key: %d %s", r.Status, r.Raw)
	}
	if r := s.segment("/v1/batch", "", "text/plain", map[string]any{"writeKey": signed, "batch": []map[string]any{{"type": "track", "event": "e", "userId": "u"}}}); r.Status != 401 || r.code() != "signature_required" {
		t.Fatalf("unsigned beacon of a signing key: %d %s", r.Status, r.Raw)
	}
	limited := s.segmentKey(p, subs["web"], map[string]any{"rateLimit": 1})
	var got429 resp
	for i := range 5 {
		r := s.segment("/v1/track", limited, "application/json", map[string]any{"event": "e", "userId": "u", "messageId": fmt.Sprint("rl-", i)})
		if r.Status == 429 {
			got429 = r
			break
		}
	}
	if got429.Status != 429 || got429.Header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d %s", got429.Status, got429.Raw)
	}
}

// TestSegmentFullBacklog: when some messages of a batch cannot be queued
// (the backlog is full), the answer is 503 with Retry-After, so Segment's
// libraries send the whole batch again; once there is room, the retry
// stores each message once.
func TestSegmentFullBacklog(t *testing.T) {
	const limit = 50
	s := startWith(t, t.TempDir(), func(c *config) {
		c.NATS.Host, c.NATS.Port = "127.0.0.1", -1
		c.Bus.MaxMsgs = limit
	})
	p, subs, _ := s.tenant("segfull", "web")
	key := s.segmentKey(p, subs["web"], nil)
	js, state := streamOf(t, s)
	ctx := context.Background()
	if _, err := js.PauseConsumer(ctx, subject.EventsStream, subject.WorkersConsumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	batchOf := func(prefix string, n int) map[string]any {
		var b []map[string]any
		for i := range n {
			b = append(b, map[string]any{"type": "track", "event": "e", "userId": "u", "messageId": fmt.Sprint(prefix, i)})
		}
		return map[string]any{"batch": b}
	}
	if r := s.segment("/v1/batch", key, "application/json", batchOf("first-", 30)); r.Status != 200 {
		t.Fatalf("the first batch: %d %s", r.Status, r.Raw)
	}
	batch := batchOf("full-", 40)
	r := s.segment("/v1/batch", key, "application/json", batch)
	if r.Status != 503 || r.code() != "backpressure" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a batch into a full backlog: %d %s", r.Status, r.Raw)
	}
	if n := state().Msgs; n > limit {
		t.Fatalf("the stream holds %d, over its limit %d", n, limit)
	}
	if _, err := js.ResumeConsumer(ctx, subject.EventsStream, subject.WorkersConsumer); err != nil {
		t.Fatal(err)
	}
	// The SDK's retry, until the backlog has room for it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = s.segment("/v1/batch", key, "application/json", batch)
		if r.Status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.Status != 200 {
		t.Fatalf("the retry: %d %s", r.Status, r.Raw)
	}
	s.waitTotal(subs["web"], 70)
}
