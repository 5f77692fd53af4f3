package allinone_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/subject"
)

type freshReport struct {
	TotalEvents       int64      `json:"totalEvents"`
	DataCompleteUntil *time.Time `json:"dataCompleteUntil"`
	CachedAt          *time.Time `json:"cachedAt"`
}

// TestDataCompleteUntil: a report never says its data is complete past an
// event it does not count. With the workers stopped, an accepted event is
// missing from the reports and dataCompleteUntil stays before it, poll
// after poll (cached answers included); once the workers run again, the
// event is counted and dataCompleteUntil passes it. The raw events page
// says the same.
func TestDataCompleteUntil(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	p, subs, key := s.tenant("fresh", "web")
	js, _ := streamOf(t, s)
	ctx := context.Background()
	path := "/reports/sub-systems/" + subs["web"]
	report := func() freshReport {
		var r freshReport
		s.must(200, "GET", path, "admin", nil, &r)
		if r.DataCompleteUntil == nil {
			t.Fatal("no dataCompleteUntil")
		}
		return r
	}
	s.must(202, "POST", "/tracking", key, ev("web", "view", "id", "first"), nil)
	sent := time.Now()
	poll(t, "the first event counted and complete", 30*time.Second, func() bool {
		r := report()
		return r.TotalEvents == 1 && r.DataCompleteUntil.After(sent)
	})

	if _, err := js.PauseConsumer(ctx, subject.EventsStream, subject.WorkersConsumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.must(202, "POST", "/tracking", key, ev("web", "view", "id", "pending"), nil)
	accepted := time.Now() // the pending event was received before this
	// The invariant, over a window longer than the slack and the cache.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); {
		r := report()
		if r.DataCompleteUntil.After(accepted) && r.TotalEvents != 2 {
			t.Fatalf("dataCompleteUntil %s is past an event received before %s, which the report does not count (%d)",
				r.DataCompleteUntil.Format(time.RFC3339Nano), accepted.Format(time.RFC3339Nano), r.TotalEvents)
		}
		if r.TotalEvents != 1 {
			t.Fatalf("with the workers stopped the report counts %d", r.TotalEvents)
		}
		var page struct{ DataCompleteUntil *time.Time }
		s.must(200, "GET", "/reports/partners/"+p+"/events", "admin", nil, &page)
		if page.DataCompleteUntil == nil || page.DataCompleteUntil.After(accepted) {
			t.Fatalf("events page: dataCompleteUntil %v past the pending event", page.DataCompleteUntil)
		}
		time.Sleep(250 * time.Millisecond) // pacing the checks, not waiting for anything
	}
	if _, err := js.ResumeConsumer(ctx, subject.EventsStream, subject.WorkersConsumer); err != nil {
		t.Fatal(err)
	}
	poll(t, "the pending event counted and complete", 30*time.Second, func() bool {
		r := report()
		if r.DataCompleteUntil.After(accepted) && r.TotalEvents != 2 {
			t.Fatalf("complete past the pending event without counting it")
		}
		return r.TotalEvents == 2
	})
}

// TestReportCache: an answer from the cache says so (cachedAt, Age); a
// fresh one does not; every parameter is part of the key; a range that
// reaches into the open hour is cached only briefly.
func TestReportCache(t *testing.T) {
	s, p, subs, key, old := withOldEvent(t, "cache")

	get := func(q url.Values) (freshReport, resp) {
		t.Helper()
		var r freshReport
		raw := s.must(200, "GET", "/reports/sub-systems/"+subs["web"]+"?"+q.Encode(), "admin", nil, nil)
		if err := json.Unmarshal(raw.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r, raw
	}
	closed := url.Values{"from": {old.Add(-time.Hour).Format(time.RFC3339)}, "to": {old.Add(2 * time.Hour).Format(time.RFC3339)}}
	first, raw := get(closed)
	if first.CachedAt != nil || raw.Header.Get("Age") != "" || first.TotalEvents != 1 {
		t.Fatalf("first answer: %s, Age %q", raw.Raw, raw.Header.Get("Age"))
	}
	second, raw := get(closed)
	age, err := strconv.Atoi(raw.Header.Get("Age"))
	if second.CachedAt == nil || err != nil || age < 0 || age > 60 || second.TotalEvents != 1 {
		t.Fatalf("second answer: %s, Age %q", raw.Raw, raw.Header.Get("Age"))
	}
	// Every parameter is in the key.
	for name, v := range map[string]string{"tz": "Asia/Kolkata", "granularity": "day", "eventType": "view",
		"from": old.Add(-2 * time.Hour).Format(time.RFC3339), "to": old.Add(3 * time.Hour).Format(time.RFC3339)} {
		q := url.Values{}
		for k, vs := range closed {
			q[k] = vs
		}
		q.Set(name, v)
		if r, raw := get(q); r.CachedAt != nil {
			t.Fatalf("with %s=%s: an answer cached for other parameters: %s", name, v, raw.Raw)
		}
	}
	// And on a partner's report, its own: subSystemId and top.
	getPartner := func(q url.Values) (freshReport, resp) {
		t.Helper()
		var r freshReport
		raw := s.must(200, "GET", "/reports/partners/"+p+"?"+q.Encode(), "admin", nil, nil)
		if err := json.Unmarshal(raw.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r, raw
	}
	getPartner(closed)
	if r, raw := getPartner(closed); r.CachedAt == nil {
		t.Fatalf("a partner's report asked twice was not cached: %s", raw.Raw)
	}
	for name, v := range map[string]string{"subSystemId": subs["web"], "top": "3"} {
		q := url.Values{}
		for k, vs := range closed {
			q[k] = vs
		}
		q.Set(name, v)
		if r, raw := getPartner(q); r.CachedAt != nil {
			t.Fatalf("partner report with %s=%s: an answer cached for other parameters: %s", name, v, raw.Raw)
		}
	}
	// A late event into the cached closed range: the workers bump the
	// range's generation, so the next answer counts it (long before the
	// closed range's 10 minutes).
	s.must(202, "POST", "/tracking", key, ev("web", "view", "id", "late", "timestamp", old.Add(30*time.Minute).Format(time.RFC3339)), nil)
	poll(t, "the late event in the cached closed range", 20*time.Second, func() bool {
		r, _ := get(closed)
		return r.TotalEvents == 2
	})
	if r, _ := get(closed); r.CachedAt == nil || r.TotalEvents != 2 {
		t.Fatalf("after the late event, the answer is not cached again: %+v", r)
	}

	// The open hour: cached briefly, then computed again.
	open := url.Values{"from": {old.Format(time.RFC3339)}}
	get(open)
	if r, _ := get(open); r.CachedAt == nil {
		t.Fatal("an answer reaching into the open hour was not cached at all")
	}
	poll(t, "the open hour's answer computed again", 20*time.Second, func() bool {
		r, _ := get(open)
		return r.CachedAt == nil
	})
}

// TestEventsPageCache: a page of raw events over a given range comes from
// the cache the second time, with cachedAt and Age as a report does; a
// late event into it is listed by the next request (the workers' bump);
// a first page without to (up to now) is listed afresh each time.
func TestEventsPageCache(t *testing.T) {
	s, p, _, key, old := withOldEvent(t, "pagecache")
	type page struct {
		Events   []listedEvent `json:"events"`
		CachedAt *time.Time    `json:"cachedAt"`
	}
	get := func(q url.Values) (page, resp) {
		t.Helper()
		var pg page
		raw := s.must(200, "GET", "/reports/partners/"+p+"/events?"+q.Encode(), "admin", nil, nil)
		if err := json.Unmarshal(raw.Data, &pg); err != nil {
			t.Fatal(err)
		}
		return pg, raw
	}
	closed := url.Values{"from": {old.Add(-time.Hour).Format(time.RFC3339)}, "to": {old.Add(2 * time.Hour).Format(time.RFC3339)}}
	first, raw := get(closed)
	if first.CachedAt != nil || raw.Header.Get("Age") != "" || len(first.Events) != 1 {
		t.Fatalf("first page: %s, Age %q", raw.Raw, raw.Header.Get("Age"))
	}
	second, raw := get(closed)
	age, err := strconv.Atoi(raw.Header.Get("Age"))
	if second.CachedAt == nil || err != nil || age < 0 || age > 60 || len(second.Events) != 1 {
		t.Fatalf("second page: %s, Age %q", raw.Raw, raw.Header.Get("Age"))
	}
	s.must(202, "POST", "/tracking", key, ev("web", "view", "id", "late", "timestamp", old.Add(30*time.Minute).Format(time.RFC3339)), nil)
	poll(t, "the late event in the cached page", 20*time.Second, func() bool {
		pg, _ := get(closed)
		return len(pg.Events) == 2 && pg.Events[0].ID == "late"
	})
	if pg, _ := get(closed); pg.CachedAt == nil || len(pg.Events) != 2 {
		t.Fatalf("after the late event, the page is not cached again: %+v", pg)
	}
	open := url.Values{"from": {old.Format(time.RFC3339)}}
	for range 2 {
		if pg, raw := get(open); pg.CachedAt != nil || raw.Header.Get("Age") != "" {
			t.Fatalf("a page up to now came from the cache: %s", raw.Raw)
		}
	}
}

// TestRenameRefreshesCachedReports: an answer of a closed range is cached
// for 10 minutes, and it names the partner and its sub-systems. A rename
// (the registry's change) makes the next answer name the new names.
func TestRenameRefreshesCachedReports(t *testing.T) {
	s := start(t, t.TempDir())
	p, subs, key := s.tenant("rename", "web")
	at := time.Now().UTC().Add(-48 * time.Hour)
	s.must(202, "POST", "/tracking", key, ev("web", "view", "timestamp", at.Format(time.RFC3339), "userId", "u1"), nil)
	q := url.Values{"from": {at.Add(-24 * time.Hour).Format(time.DateOnly)}, "to": {at.Add(24 * time.Hour).Format(time.DateOnly)}}
	type named struct {
		SubSystemName string     `json:"subSystemName"`
		PartnerName   string     `json:"partnerName"`
		TotalEvents   int64      `json:"totalEvents"`
		CachedAt      *time.Time `json:"cachedAt"`
		TopSubSystems []struct {
			SubSystemName string `json:"subSystemName"`
		} `json:"topSubSystems"`
	}
	sub := func() named {
		var r named
		s.must(200, "GET", "/reports/sub-systems/"+subs["web"]+"?"+q.Encode(), "admin", nil, &r)
		return r
	}
	partner := func() named {
		var r named
		s.must(200, "GET", "/reports/partners/"+p+"?"+q.Encode(), "admin", nil, &r)
		return r
	}
	poll(t, "the event counted and both answers cached", 30*time.Second, func() bool {
		a, b := sub(), partner()
		return a.TotalEvents == 1 && b.TotalEvents == 1 && a.CachedAt != nil && b.CachedAt != nil
	})
	if a, b := sub(), partner(); a.SubSystemName != "Sub web" || b.PartnerName != "Partner rename" || len(b.TopSubSystems) != 1 || b.TopSubSystems[0].SubSystemName != "Sub web" {
		t.Fatalf("before the rename: %+v, %+v", a, b)
	}
	s.must(200, "PUT", "/partners/"+p+"/sub-systems/"+subs["web"], "admin", map[string]string{"name": "Website"}, nil)
	s.must(200, "PUT", "/partners/"+p, "admin", map[string]string{"name": "Renamed partner"}, nil)
	poll(t, "the cached answers name the new names", 10*time.Second, func() bool {
		a, b := sub(), partner()
		return a.SubSystemName == "Website" && b.PartnerName == "Renamed partner" && len(b.TopSubSystems) == 1 && b.TopSubSystems[0].SubSystemName == "Website"
	})
}

// withOldEvent starts an all-in-one with a partner (code) and its "web"
// sub-system, and stores one event "old" 30 hours back (the closed past),
// polled for under a key of its own so that no answer the test asks for
// is cached yet.
func withOldEvent(t *testing.T, code string) (s *sys, partner string, subs map[string]string, key string, old time.Time) {
	t.Helper()
	s = startWith(t, t.TempDir(), func(*config) {})
	partner, subs, key = s.tenant(code, "web")
	old = time.Now().UTC().Add(-30 * time.Hour).Truncate(time.Hour)
	s.must(202, "POST", "/tracking", key, ev("web", "view", "id", "old", "timestamp", old.Format(time.RFC3339)), nil)
	var stored freshReport
	poll(t, "the event stored", 20*time.Second, func() bool {
		s.must(200, "GET", "/reports/partners/"+partner+"?from="+old.Format(time.RFC3339)+"&tz=Europe/Paris", "admin", nil, &stored)
		return stored.TotalEvents == 1
	})
	return s, partner, subs, key, old
}
