package allinone_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// openTail opens the live tail with a credential ("admin" or a key) and
// returns its events as they come; the stream closes with the test.
func (s *sys) openTail(path, auth string) (status int, events <-chan sseEvent, stop func()) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := s.request("GET", path, auth, nil).WithContext(ctx)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	if hr.StatusCode != 200 {
		hr.Body.Close()
		cancel()
		return hr.StatusCode, nil, func() {}
	}
	if ct := hr.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.t.Fatalf("tail: Content-Type %q", ct)
	}
	ch := make(chan sseEvent, 4096)
	go func() {
		defer close(ch)
		defer hr.Body.Close()
		sc := bufio.NewScanner(hr.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	s.t.Cleanup(cancel)
	return 200, ch, cancel
}

// collect reads stored and omitted events until want have been accounted
// for or the deadline passes.
func collect(t *testing.T, events <-chan sseEvent, want int, deadline time.Duration) (stored map[string]string, omitted int) {
	t.Helper()
	stored = map[string]string{}
	timeout := time.After(deadline)
	for len(stored)+omitted < want {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the tail closed after %d stored, %d omitted of %d", len(stored), omitted, want)
			}
			switch ev.name {
			case "stored":
				var e struct{ ID, SubSystemID, EventType string }
				if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
					t.Fatalf("stored event: %v: %s", err, ev.data)
				}
				if _, dup := stored[e.ID]; dup {
					t.Fatalf("event %s tailed twice", e.ID)
				}
				stored[e.ID] = e.SubSystemID
			case "omitted":
				var o struct{ Omitted int }
				json.Unmarshal([]byte(ev.data), &o)
				omitted += o.Omitted
			}
		case <-timeout:
			t.Fatalf("after %v: %d stored, %d omitted, want %d", deadline, len(stored), omitted, want)
		}
	}
	return stored, omitted
}

// TestLiveTail: the tail streams a partner's events as workers store them,
// to the admin and to that partner's report keys only, filtered by
// sub-system, bounded in rate (the rest counted) and in streams per edge,
// and it ends when the edge stops.
func TestLiveTail(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, ingest := s.tenant("tail", "web", "api")
	other, _, _ := s.tenant("tail-other", "web")
	report := s.key(p, map[string]any{"scopes": []string{"report"}}).APIKey
	otherReport := s.key(other, map[string]any{"scopes": []string{"report"}}).APIKey
	path := "/reports/partners/" + p + "/tail"

	// Who may watch.
	var who struct {
		Role      string
		PartnerID *string
	}
	s.must(200, "GET", "/session", "admin", nil, &who)
	if who.Role != "admin" || who.PartnerID != nil {
		t.Fatalf("admin session: %+v", who)
	}
	s.must(200, "GET", "/session", report, nil, &who)
	if who.Role != "reports" || who.PartnerID == nil || *who.PartnerID != p {
		t.Fatalf("report key session: %+v", who)
	}
	expectCode(t, s.do("GET", "/session", ingest, nil), 403, "scope_missing")
	expectCode(t, s.do("GET", "/session", "", nil), 401, "admin_credential_required")
	expectCode(t, s.do("GET", path, otherReport, nil), 404, "partner_not_found")
	expectCode(t, s.do("GET", path, ingest, nil), 403, "scope_missing")
	expectCode(t, s.do("GET", path+"?subSystemId=nope", "admin", nil), 400, "invalid_parameter")
	expectCode(t, s.do("GET", path+"?since=1", "admin", nil), 400, "invalid_parameter")
	expectCode(t, s.do("GET", "/reports/partners/01a218ee-be3e-75a3-9c9c-000000000000/tail", "admin", nil), 404, "partner_not_found")

	_, all, _ := s.openTail(path, "admin")
	_, web, _ := s.openTail(path+"?subSystemId="+subs["web"], report)
	_, others, _ := s.openTail("/reports/partners/"+other+"/tail", otherReport)
	for i := range 3 {
		s.must(202, "POST", "/tracking", ingest, map[string]any{"id": fmt.Sprintf("t-web-%d", i), "subSystemCode": "web", "eventType": "click"}, nil)
		s.must(202, "POST", "/tracking", ingest, map[string]any{"id": fmt.Sprintf("t-api-%d", i), "subSystemCode": "api", "eventType": "call"}, nil)
	}
	got, _ := collect(t, all, 6, 20*time.Second)
	for i := range 3 {
		if got[fmt.Sprintf("t-web-%d", i)] != subs["web"] || got[fmt.Sprintf("t-api-%d", i)] != subs["api"] {
			t.Fatalf("tailed: %v", got)
		}
	}
	got, _ = collect(t, web, 3, 20*time.Second)
	for id, sub := range got {
		if sub != subs["web"] {
			t.Fatalf("the web filter passed %s of %s", id, sub)
		}
	}
	select {
	case ev := <-others:
		if ev.name == "stored" {
			t.Fatalf("another partner's tail saw %s", ev.data)
		}
	default:
	}

	// Past the rate, events are counted, not sent: 1,500 events, every one
	// either shown or counted, and most counted.
	for b := range 3 {
		s.must(202, "POST", "/tracking/bulk", ingest, bulkOf("web", fmt.Sprintf("burst%d-", b), 500), nil)
	}
	shown, omitted := collect(t, all, 1500, 30*time.Second)
	t.Logf("1,500 events at once: %d shown, %d omitted", len(shown), omitted)
	if omitted == 0 || len(shown) > 400 {
		t.Fatalf("1,500 events at once: %d shown, %d omitted; want the rate bound (50/s, burst 100) to hold", len(shown), omitted)
	}

	// Streams are bounded per partner (8) and apart for the admin (16), so
	// one partner cannot take them all: past its share, 503 overloaded,
	// while the others still open theirs.
	var stops []func()
	open := func(auth string, want int) {
		t.Helper()
		st, _, stop := s.openTail(path, auth)
		if st != want {
			t.Fatalf("stream %d with %.8s…: %d, want %d", len(stops)+1, auth, st, want)
		}
		stops = append(stops, stop)
	}
	for range 8 - 1 { // the web filter's stream is one of the partner's 8
		open(report, 200)
	}
	expectCode(t, s.do("GET", path, report, nil), 503, "overloaded")
	for range 16 - 1 { // "all" is one of the admin's 16
		open("admin", 200)
	}
	expectCode(t, s.do("GET", path, "admin", nil), 503, "overloaded")
	if st, _, stop := s.openTail("/reports/partners/"+other+"/tail", otherReport); st != 200 {
		t.Fatalf("another partner's stream while this one's share is taken: %d", st)
	} else {
		stop()
	}
	stops[0]()
	poll(t, "a closed stream given back", 10*time.Second, func() bool {
		st, _, stop := s.openTail(path, report)
		stop()
		return st == 200
	})
	for _, stop := range stops {
		stop()
	}

	// A key that comes to require signing ends its unsigned stream.
	signer := s.key(p, map[string]any{"scopes": []string{"report"}})
	unsigned := openTailWhenFree(t, s, path, signer.APIKey)
	s.must(200, "PUT", "/partners/"+p+"/api-keys/"+signer.ID, "admin", map[string]any{"requireSignature": true}, nil)
	waitRefused(t, unsigned, "signature_required")

	// A revoked key's open stream ends, saying why.
	doomed := s.key(p, map[string]any{"scopes": []string{"report"}})
	watched := openTailWhenFree(t, s, path, doomed.APIKey)
	s.must(200, "DELETE", "/partners/"+p+"/api-keys/"+doomed.ID, "admin", nil, nil)
	waitRefused(t, watched, "api_key_revoked")

	// A key bound to one sub-system since ends its stream of the whole
	// partner, as a bound key cannot open one (TestBoundReportKey).
	rebound := s.key(p, map[string]any{"scopes": []string{"report"}})
	whole := openTailWhenFree(t, s, path, rebound.APIKey)
	s.must(200, "PUT", "/partners/"+p+"/api-keys/"+rebound.ID, "admin", map[string]any{"subSystemId": subs["web"]}, nil)
	waitRefused(t, whole, "key_sub_system_mismatch")

	// The edge stops: the tail says so and ends; the stop does not wait on it.
	start := time.Now()
	s.stop()
	for ev := range all {
		if ev.name == "closing" {
			break
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("stopping with live tails open took %v", took)
	}
}

// waitRefused reads a stream until it ends with a "refused" event of code.
// openTailWhenFree opens a tail once a stream slot is free (streams just
// closed give theirs back shortly).
func openTailWhenFree(t *testing.T, s *sys, path, auth string) <-chan sseEvent {
	t.Helper()
	var events <-chan sseEvent
	poll(t, "a stream slot", 10*time.Second, func() bool {
		st, ev, _ := s.openTail(path, auth)
		events = ev
		return st == 200
	})
	return events
}

func waitRefused(t *testing.T, events <-chan sseEvent, code string) {
	t.Helper()
	ended := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended without saying %s", code)
			}
			if ev.name == "refused" {
				if !strings.Contains(ev.data, code) {
					t.Fatalf("refused with %s, want %s", ev.data, code)
				}
				return
			}
		case <-ended:
			t.Fatalf("the stream is still open after 20 s, want it refused with %s", code)
		}
	}
}
