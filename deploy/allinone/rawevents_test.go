package allinone_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// listedEvent is an event of the raw events listing.
type listedEvent struct {
	ID          string    `json:"id"`
	SubSystemID string    `json:"subSystemId"`
	EventType   string    `json:"eventType"`
	Timestamp   time.Time `json:"timestamp"`
	UserID      string    `json:"userId"`
	Metadata    map[string]any
}

type eventsPage struct {
	Events     []listedEvent `json:"events"`
	NextCursor string        `json:"nextCursor"`
	Limit      int           `json:"limit"`
}

// TestRawEvents: GET /reports/partners/{id}/events lists the events behind
// the numbers, newest first, page by page with a cursor that holds while
// new events arrive; filters, limits and bad cursors answer as documented.
func TestRawEvents(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, key := s.tenant("raw", "web", "app")
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	var want []string // newest first
	for i := range 25 {
		sub, typ := []string{"web", "app"}[i%2], []string{"view", "buy"}[i%3/2]
		id := fmt.Sprintf("raw-%02d", i)
		s.must(202, "POST", "/tracking", key, ev(sub, typ, "id", id, "timestamp", base.Add(time.Duration(i)*37*time.Second).Format(time.RFC3339),
			"userId", fmt.Sprint("u", i), "metadata", map[string]any{"i": i}), nil)
		want = append([]string{id}, want...)
	}
	s.waitTotal(subs["web"], 13)
	s.waitTotal(subs["app"], 12)

	list := func(q url.Values, between func()) []string {
		t.Helper()
		var ids []string
		for page := 0; ; page++ {
			var pg eventsPage
			s.must(200, "GET", "/reports/partners/"+p+"/events?"+q.Encode(), "admin", nil, &pg)
			for _, e := range pg.Events {
				ids = append(ids, e.ID)
			}
			if page > 0 && len(pg.Events) == 0 {
				t.Fatalf("page %d is empty: a nextCursor led to no event (%v)", page, q)
			}
			if pg.NextCursor == "" {
				return ids
			}
			if page > 30 {
				t.Fatal("no end")
			}
			q.Set("cursor", pg.NextCursor)
			if between != nil {
				between()
			}
		}
	}
	from := base.Add(-time.Minute).Format(time.RFC3339)
	// Newest first, 10 at a time, while newer events keep arriving.
	n := 0
	got := list(url.Values{"from": {from}, "limit": {"10"}}, func() {
		n++
		s.must(202, "POST", "/tracking", key, ev("web", "view", "id", fmt.Sprint("newer-", n)), nil)
	})
	if !slices.Equal(got, want) {
		t.Fatalf("listed\n%v\nwant\n%v", got, want)
	}
	// 25 events in pages of 5: the fifth is the last, with no nextCursor.
	if got := list(url.Values{"from": {from}, "to": {base.Add(time.Hour).Format(time.RFC3339)}, "limit": {"5"}}, nil); !slices.Equal(got, want) {
		t.Fatalf("pages of 5: %v", got)
	}
	// Filters.
	var views, app []string
	for _, id := range want {
		var i int
		fmt.Sscanf(id, "raw-%d", &i)
		if i%3/2 == 0 {
			views = append(views, id)
		}
		if i%2 == 1 {
			app = append(app, id)
		}
	}
	to := base.Add(time.Hour).Format(time.RFC3339)
	if got := list(url.Values{"from": {from}, "to": {to}, "eventType": {"view"}, "limit": {"4"}}, nil); !slices.Equal(got, views) {
		t.Fatalf("views: %v, want %v", got, views)
	}
	if got := list(url.Values{"from": {from}, "to": {to}, "subSystemId": {subs["app"]}}, nil); !slices.Equal(got, app) {
		t.Fatalf("app: %v, want %v", got, app)
	}
	// The body is the event as sent.
	var pg eventsPage
	s.must(200, "GET", "/reports/partners/"+p+"/events?"+url.Values{"from": {from}, "to": {to}, "limit": {"1"}}.Encode(), "admin", nil, &pg)
	if len(pg.Events) != 1 || pg.Events[0].ID != "raw-24" || pg.Events[0].UserID != "u24" || pg.Events[0].Metadata["i"] != float64(24) ||
		!pg.Events[0].Timestamp.Equal(base.Add(24*37*time.Second)) || pg.Events[0].SubSystemID != subs["web"] || pg.Limit != 1 {
		t.Fatalf("first event: %+v", pg)
	}
	// A cursor belongs to its listing; limits are bounded.
	other := url.Values{"from": {from}, "to": {to}, "eventType": {"buy"}, "cursor": {pg.NextCursor}}
	for path, field := range map[string]string{
		"?" + other.Encode():          "cursor",
		"?cursor=bm90LWEtY3Vyc29y":    "cursor",
		"?cursor=%25%25":              "cursor",
		"?limit=0":                    "limit",
		"?limit=1001":                 "limit",
		"?limit=ten":                  "limit",
		"?granularity=day":            "granularity",
		"?subSystemId=" + p:           "subSystemId",
		"?from=2026-13-01":            "from",
		"?from=" + to + "&to=" + from: "",
	} {
		r := s.do("GET", "/reports/partners/"+p+"/events"+path, "admin", nil)
		if r.Status != 400 || (field != "" && (r.Error == nil || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != field)) {
			t.Errorf("%s: %d %s, want 400 naming %q", path, r.Status, r.Raw, field)
		}
	}
	var ok struct{ Events []json.RawMessage }
	s.must(200, "GET", "/reports/partners/"+p+"/events?limit=1000", "admin", nil, &ok)
}

// TestLargePagesSplit: events of large metadata whose page would pass the
// bus's largest message (1 MiB on the all-in-one) come in pages that fit,
// each with a nextCursor to the rest, not as a request that waits for its
// timeout.
func TestLargePagesSplit(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, key := s.tenant("bigpages", "web")
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	blob := strings.Repeat("x", 30<<10)
	for i := range 40 {
		s.must(202, "POST", "/tracking", key, ev("web", "view", "id", fmt.Sprintf("big-%02d", i),
			"timestamp", base.Add(time.Duration(i)*time.Second).Format(time.RFC3339), "metadata", map[string]any{"blob": blob}), nil)
	}
	s.waitTotal(subs["web"], 40)
	q := url.Values{"from": {base.Add(-time.Minute).Format(time.RFC3339)}, "to": {base.Add(time.Hour).Format(time.RFC3339)}, "limit": {"1000"}}
	seen := map[string]bool{}
	pages := 0
	for {
		var pg eventsPage
		s.must(200, "GET", "/reports/partners/"+p+"/events?"+q.Encode(), "admin", nil, &pg)
		for _, e := range pg.Events {
			if seen[e.ID] {
				t.Fatalf("%s listed twice", e.ID)
			}
			seen[e.ID] = true
		}
		pages++
		if pg.NextCursor == "" || pages > 40 {
			break
		}
		q.Set("cursor", pg.NextCursor)
	}
	if len(seen) != 40 || pages < 2 {
		t.Fatalf("%d events in %d pages, want 40 in at least 2", len(seen), pages)
	}
}
