package allinone_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/subject"
)

// TestDeadLetterRoutes: an admin lists, replays and discards a partner's
// dead letters over HTTP; nobody else can, and partners do not see each other's.
func TestDeadLetterRoutes(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	p, subs, _ := s.tenant("dlq", "web")
	other, _, _ := s.tenant("dlq2", "web")
	js, _ := streamOf(t, s)
	// A direct publisher's event without a timestamp can never be stored.
	bad := fmt.Sprintf(`{"id":"x1","partnerId":%q,"subSystemId":%q,"eventType":"t"}`, p, subs["web"])
	if _, err := js.Publish(t.Context(), subject.Events(p, subs["web"]), []byte(bad)); err != nil {
		t.Fatal(err)
	}
	base := "/partners/" + p + "/dead-letters"
	list := func(partner string) dlqapi.Page {
		var page dlqapi.Page
		s.must(200, "GET", "/partners/"+partner+"/dead-letters", "admin", nil, &page)
		return page
	}
	var page dlqapi.Page
	poll(t, "the dead letter", 15*time.Second, func() bool { page = list(p); return len(page.Items) == 1 })
	l := page.Items[0]
	if l.Reason != "missing timestamp" || l.SubSystemID != subs["web"] || l.OriginalSubject != subject.Events(p, subs["web"]) {
		t.Fatalf("dead letter %+v", l)
	}
	var body map[string]any
	if err := json.Unmarshal(l.Event, &body); err != nil || body["id"] != "x1" {
		t.Fatalf("event %s", l.Event)
	}
	if got := list(other); len(got.Items) != 0 {
		t.Fatalf("another partner sees %+v", got)
	}
	for _, auth := range []string{"", "vtk_not_a_key"} {
		if r := s.do("GET", base, auth, nil); r.Status != 401 {
			t.Fatalf("listing with %q: %d", auth, r.Status)
		}
	}
	if r := s.do("GET", base+"?limit=0", "admin", nil); r.Status != 400 || r.code() != "invalid_parameter" {
		t.Fatalf("limit=0: %d %s", r.Status, r.code())
	}
	// Replay: it goes through the stream and a worker again, and comes back.
	var rr dlqapi.ReplayResult
	s.must(200, "POST", base+"/replay", "admin", map[string]any{"seqs": []uint64{l.Seq}}, &rr)
	if len(rr.Replayed) != 1 || rr.Replayed[0] != l.Seq {
		t.Fatalf("replay: %+v", rr)
	}
	poll(t, "the replayed event dead-lettered again", 15*time.Second, func() bool {
		page = list(p)
		return len(page.Items) == 1 && page.Items[0].Seq != l.Seq
	})
	// Another partner's route cannot discard it; the admin can, once.
	if r := s.do("DELETE", "/partners/"+other+"/dead-letters/"+fmt.Sprint(page.Items[0].Seq), "admin", nil); r.Status != 404 {
		t.Fatalf("discard through another partner: %d", r.Status)
	}
	s.must(200, "DELETE", base+"/"+fmt.Sprint(page.Items[0].Seq), "admin", nil, nil)
	if r := s.do("DELETE", base+"/"+fmt.Sprint(page.Items[0].Seq), "admin", nil); r.Status != 404 || r.code() != "not_found" {
		t.Fatalf("second discard: %d %s", r.Status, r.code())
	}
	if got := list(p); len(got.Items) != 0 {
		t.Fatalf("after discard: %+v", got)
	}
}

// TestPartnerListsItsOwnDeadLetters: a client that reused an id with other
// content is told by the list of its own dead letters, which its key of the
// report scope reads (as the workers check the forwarded key again); a key
// bound to a sub-system reads that sub-system's; nobody else's key reads
// them, and replay and discard stay the admin's.
func TestPartnerListsItsOwnDeadLetters(t *testing.T) {
	s := start(t, t.TempDir())
	p, subs, ingest := s.tenant("own", "web", "ios")
	other, _, _ := s.tenant("theirs", "web")
	reader := s.key(p, map[string]any{"scopes": []string{"report"}}).APIKey
	boundIOS := s.key(p, map[string]any{"scopes": []string{"ingest", "report"}, "subSystemId": subs["ios"]}).APIKey
	otherReader := s.key(other, map[string]any{"scopes": []string{"report"}}).APIKey
	for _, sub := range []string{"web", "ios"} {
		id := "dup-" + sub
		s.must(202, "POST", "/tracking", ingest, ev(sub, "signup", "id", id), nil)
		s.waitTotal(subs[sub], 1)
		s.must(202, "POST", "/tracking", ingest, ev(sub, "purchase", "id", id), nil) // the same id, other content
	}
	base := "/partners/" + p + "/dead-letters"
	var page dlqapi.Page
	poll(t, "both conflicts dead-lettered", 15*time.Second, func() bool {
		page = dlqapi.Page{}
		s.must(200, "GET", base, reader, nil, &page)
		return len(page.Items) == 2
	})
	for _, l := range page.Items {
		var e struct{ ID, EventType string }
		if err := json.Unmarshal(l.Event, &e); err != nil || !strings.HasPrefix(l.Reason, "id already taken") || e.EventType != "purchase" {
			t.Fatalf("dead letter %+v (%s)", l, l.Event)
		}
	}
	var ios dlqapi.Page
	s.must(200, "GET", base, boundIOS, nil, &ios)
	if len(ios.Items) != 1 || ios.Items[0].SubSystemID != subs["ios"] {
		t.Fatalf("the ios-bound key lists %+v", ios)
	}
	expectCode(t, s.do("GET", base, ingest, nil), 403, "scope_missing")
	expectCode(t, s.do("GET", base, otherReader, nil), 404, "partner_not_found")
	expectCode(t, s.do("GET", "/partners/"+other+"/dead-letters", reader, nil), 404, "partner_not_found")
	expectCode(t, s.do("POST", base+"/replay", reader, nil), 401, "admin_credential_required")
	expectCode(t, s.do("DELETE", base+"/"+fmt.Sprint(page.Items[0].Seq), reader, nil), 401, "admin_credential_required")
	var after dlqapi.Page
	s.must(200, "GET", base, "admin", nil, &after)
	if len(after.Items) != 2 {
		t.Fatalf("after refused calls: %+v", after)
	}
	// The streams' sequences are every partner's: a key sees neither the
	// events stream's (originalSeq) nor the dead-letter stream's, but a
	// permutation of them it pages on with.
	for i, l := range page.Items {
		if l.OriginalSeq != 0 || l.Seq == after.Items[i].Seq || after.Items[i].OriginalSeq == 0 {
			t.Fatalf("a key's letter %d: seq %d, originalSeq %d; the admin's: %d, %d", i, l.Seq, l.OriginalSeq, after.Items[i].Seq, after.Items[i].OriginalSeq)
		}
	}
	var first, second dlqapi.Page
	s.must(200, "GET", base+"?limit=1", reader, nil, &first)
	if len(first.Items) != 1 || first.Next == 0 {
		t.Fatalf("a page of one: %+v", first)
	}
	s.must(200, "GET", base+fmt.Sprintf("?limit=1&after=%d", first.Next), reader, nil, &second)
	if len(second.Items) != 1 || second.Items[0].Seq != page.Items[1].Seq || second.Next != 0 {
		t.Fatalf("the page after %d: %+v, want the second letter %d and no more", first.Next, second, page.Items[1].Seq)
	}
	s.must(200, "GET", base+"?after=18446744073709551615", "admin", nil, &second)
	if len(second.Items) != 0 {
		t.Fatalf("after the last sequence: %+v", second)
	}
}

// TestLargeDeadLettersSplit: letters whose page would pass the bus's
// largest message (1 MiB on the all-in-one) come in pages that fit, not as
// a request that times out.
func TestLargeDeadLettersSplit(t *testing.T) {
	s := start(t, t.TempDir())
	p, subs, ingest := s.tenant("big", "web")
	big := strings.Repeat("x", 30000)
	const n = 40
	for _, typ := range []string{"first", "second"} {
		for from := 0; from < n; from += 10 { // bulks of 10: under 4 MiB as sent
			var evs []map[string]any
			for i := from; i < from+10; i++ {
				evs = append(evs, ev("web", typ, "id", fmt.Sprint("big-", i), "metadata", map[string]any{"blob": big}))
			}
			s.must(202, "POST", "/tracking/bulk", ingest, map[string]any{"events": evs}, nil)
		}
		if typ == "first" {
			s.waitTotal(subs["web"], n)
		}
	}
	base := "/partners/" + p + "/dead-letters?limit=200"
	var all []dlqapi.Letter
	pages := 0
	poll(t, "every conflict dead-lettered", 20*time.Second, func() bool {
		all, pages = nil, 0
		q := base
		for ; pages < 50; pages++ {
			var page dlqapi.Page
			s.must(200, "GET", q, "admin", nil, &page)
			all = append(all, page.Items...)
			if page.Next == 0 {
				break
			}
			q = base + fmt.Sprintf("&after=%d", page.Next)
		}
		return len(all) == n
	})
	if pages < 1 { // 40 letters of 30 KB: at least two pages of at most 768 KiB
		t.Fatalf("%d letters of 30 KB in one page", n)
	}
	seen := map[string]bool{}
	for _, l := range all {
		var e struct{ ID, EventType string }
		if err := json.Unmarshal(l.Event, &e); err != nil || e.EventType != "second" || seen[e.ID] {
			t.Fatalf("letter %d: %v %+v", l.Seq, err, e)
		}
		seen[e.ID] = true
	}
}
