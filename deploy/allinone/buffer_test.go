package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/testenv"
)

// streamOf connects to the all-in-one's NATS port and reads EVENTS.
func streamOf(t *testing.T, s *sys) (jetstream.JetStream, func() jetstream.StreamState) {
	t.Helper()
	_, js := testenv.ConnURL(t, s.app.NATSURL(), nats.UserCredentials(s.app.Creds("admin")))
	return js, func() jetstream.StreamState {
		st, err := js.Stream(context.Background(), subject.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State
	}
}

func poll(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type bulkAnswer struct {
	Accepted, Rejected int
	Results            []struct {
		ID     string
		Status string
		Error  *struct{ Code string }
	}
}

func bulkOf(sub, prefix string, n int) map[string]any {
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = ev(sub, "load", "id", fmt.Sprintf("%s-%d", prefix, i))
	}
	return map[string]any{"events": evs}
}

// TestStreamIsABuffer: EVENTS holds only what is not yet stored. Five times
// its message limit goes through in bursts the workers absorb; every event is
// stored once and the stream ends empty.
func TestStreamIsABuffer(t *testing.T) {
	const limit, bursts, perBurst, bulk = 10_000, 5, 10_000, 500
	s := startWith(t, t.TempDir(), func(c *config) {
		c.NATS.Host, c.NATS.Port = "127.0.0.1", -1
		c.Bus.MaxMsgs = limit
	})
	_, subs, key := s.tenant("buffer", "web")
	_, state := streamOf(t, s)
	for b := 0; b < bursts; b++ {
		for i := 0; i < perBurst/bulk; i++ {
			var out bulkAnswer
			s.must(202, "POST", "/tracking/bulk", key, bulkOf("web", fmt.Sprintf("b%d-%d", b, i), bulk), &out)
			if out.Accepted != bulk {
				t.Fatalf("burst %d bulk %d: accepted %d of %d", b, i, out.Accepted, bulk)
			}
		}
		// The next burst fits only if stored events left the stream.
		poll(t, "the workers to absorb the burst", time.Minute, func() bool { return state().Msgs == 0 })
	}
	s.waitTotal(subs["web"], bursts*perBurst)
	if st := state(); st.Msgs != 0 || st.LastSeq != bursts*perBurst {
		t.Fatalf("stream after the drain: %d messages, last sequence %d", st.Msgs, st.LastSeq)
	}
}

// TestFullBacklog: with the workers stopped (their consumer paused, as during
// a storage outage) the backlog fills; the edge then answers 503 with
// Retry-After and names each event, and nothing accepted is lost.
func TestFullBacklog(t *testing.T) {
	const limit = 1_000
	s := startWith(t, t.TempDir(), func(c *config) {
		c.NATS.Host, c.NATS.Port = "127.0.0.1", -1
		c.Bus.MaxMsgs = limit
	})
	_, subs, key := s.tenant("full", "web")
	js, state := streamOf(t, s)
	ctx := context.Background()
	if _, err := js.PauseConsumer(ctx, subject.EventsStream, subject.WorkersConsumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	accepted := 0
	var full resp
	for i := 0; i < 20 && full.Status == 0; i++ {
		r := s.do("POST", "/tracking/bulk", key, bulkOf("web", fmt.Sprint("f", i), 100))
		var out bulkAnswer
		if err := json.Unmarshal(r.Data, &out); err != nil {
			t.Fatal(err)
		}
		accepted += out.Accepted
		for j, it := range out.Results {
			if it.ID != fmt.Sprintf("f%d-%d", i, j) {
				t.Fatalf("result %d names %q", j, it.ID)
			}
			if it.Status == "Rejected" && (it.Error == nil || it.Error.Code != "backpressure") {
				t.Fatalf("result %d rejected with %+v", j, it.Error)
			}
		}
		if out.Rejected > 0 {
			full = r
		}
	}
	if full.Status == 0 {
		t.Fatalf("2,000 events never filled a backlog of %d", limit)
	}
	if accepted != limit || state().Msgs != limit {
		t.Fatalf("accepted %d, stream holds %d, limit %d", accepted, state().Msgs, limit)
	}
	// A single event past the limit: 503, Retry-After, and its id.
	r := s.do("POST", "/tracking", key, ev("web", "load", "id", "single-1"))
	if r.Status != 503 || r.code() != "backpressure" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("single event into a full backlog: %d %s, Retry-After %q", r.Status, r.code(), r.Header.Get("Retry-After"))
	}
	var item struct{ ID string }
	if err := json.Unmarshal(r.Data, &item); err != nil || item.ID != "single-1" {
		t.Fatalf("the answer does not name the event: %s", r.Raw)
	}
	if _, err := js.ResumeConsumer(ctx, subject.EventsStream, subject.WorkersConsumer); err != nil {
		t.Fatal(err)
	}
	s.waitTotal(subs["web"], limit)
	poll(t, "the stream to drain", time.Minute, func() bool { return state().Msgs == 0 })
	// And ingest works again.
	s.must(202, "POST", "/tracking", key, ev("web", "load", "id", "single-1"), nil)
	s.waitTotal(subs["web"], limit+1)
}

// TestTimeoutNamesTheEvent: when the stream does not acknowledge in time the
// answer names the event (its generated id too): "timeout" says it may be
// stored and a retry with that id is counted once; "service_unavailable" (its
// publish deadline passed before it was sent) says retry later. Retried
// after a restart with the ids given, each is counted once.
func TestTimeoutNamesTheEvent(t *testing.T) {
	dir := t.TempDir()
	s := startWith(t, dir, func(c *config) { c.Edge.PublishTimeout = time.Nanosecond })
	p, subs, key := s.tenant("slowack", "web")
	r := s.do("POST", "/tracking", key, ev("web", "order"))
	if r.Status != 503 || (r.code() != "timeout" && r.code() != "service_unavailable") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("single: %d %s", r.Status, r.code())
	}
	var item struct {
		ID, Status string
		Error      struct{ Message string }
	}
	if err := json.Unmarshal(r.Data, &item); err != nil || item.ID == "" || item.Status != "Rejected" {
		t.Fatalf("the answer does not name the event: %s", r.Raw)
	}
	if want := map[string]string{"timeout": "retry with the same event id", "service_unavailable": "retry later"}[r.code()]; !strings.Contains(item.Error.Message, want) {
		t.Fatalf("message %q", item.Error.Message)
	}
	var bulk bulkAnswer
	br := s.do("POST", "/tracking/bulk", key, map[string]any{"events": []any{ev("web", "a"), ev("web", "b", "id", "mine-1")}})
	if err := json.Unmarshal(br.Data, &bulk); err != nil {
		t.Fatal(err)
	}
	for i, it := range bulk.Results {
		// An event acknowledged anyway is Queued, never Rejected; the others name their id.
		if it.ID == "" || (it.Status == "Rejected" && (it.Error == nil || it.Error.Code != "timeout" && it.Error.Code != "service_unavailable")) {
			t.Fatalf("bulk result %d: %+v %+v", i, it, it.Error)
		}
	}
	ids := []string{item.ID, bulk.Results[0].ID, bulk.Results[1].ID}
	s.stop()
	// The client retries with the ids it was given; each is counted once
	// whether or not the first attempt was stored.
	s = startWith(t, dir, func(*config) {})
	for i, id := range ids {
		typ := []string{"order", "a", "b"}[i]
		s.must(202, "POST", "/tracking", key, ev("web", typ, "id", id), nil)
	}
	s.waitTotal(subs["web"], 3)
	_ = p
}

// TestDedupIDsCannotBeForged: a partner publishing straight to NATS with
// the id another partner's event will have cannot make JetStream drop that
// event as a duplicate; and the same id with other content within the window
// is not silently dropped either: it reaches storage and is dead-lettered as a
// conflict, while an exact retry is a duplicate.
func TestDedupIDsCannotBeForged(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	victim, vsubs, vkey := s.tenant("victim", "web")
	attacker, asubs, _ := s.tenant("attacker", "web")
	js, _ := streamOf(t, s)
	for _, forged := range []string{victim + ":e1", "e:" + victim + ":e1", "replay:1"} {
		body := fmt.Sprintf(`{"id":"x-%s","partnerId":%q,"subSystemId":%q,"eventType":"t","timestamp":%q}`,
			strings.ReplaceAll(forged, ":", "-"), attacker, asubs["web"], time.Now().UTC().Format(time.RFC3339))
		if _, err := js.Publish(t.Context(), subject.Events(attacker, asubs["web"]), []byte(body), jetstream.WithMsgID(forged)); err != nil {
			t.Fatal(err)
		}
	}
	var first struct{ Duplicate bool }
	s.must(202, "POST", "/tracking", vkey, ev("web", "signup", "id", "e1"), &first)
	if first.Duplicate {
		t.Fatal("the victim's event was dropped as a duplicate of a forged id")
	}
	var retry struct{ Duplicate bool }
	s.must(202, "POST", "/tracking", vkey, ev("web", "signup", "id", "e1"), &retry)
	if !retry.Duplicate {
		t.Fatal("an exact retry within the window is not reported as a duplicate")
	}
	var other struct{ Duplicate bool }
	s.must(202, "POST", "/tracking", vkey, ev("web", "purchase", "id", "e1"), &other)
	if other.Duplicate {
		t.Fatal("the same id with other content was dropped as a duplicate")
	}
	s.waitTotal(vsubs["web"], 1)
	var page dlqapi.Page
	poll(t, "the conflicting event dead-lettered", 15*time.Second, func() bool {
		page = dlqapi.Page{}
		s.must(200, "GET", "/partners/"+victim+"/dead-letters", "admin", nil, &page)
		return len(page.Items) == 1
	})
	if !strings.HasPrefix(page.Items[0].Reason, "id already taken") {
		t.Fatalf("reason %q", page.Items[0].Reason)
	}
}
