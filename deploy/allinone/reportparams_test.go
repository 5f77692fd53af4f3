package allinone_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestReportParameters: the reports take a granularity and an IANA zone, a
// date is midnight in that zone, and a parameter they do not know, or a bad
// value, answers 400 naming it: never silently ignored.
func TestReportParameters(t *testing.T) {
	s := startWith(t, t.TempDir(), func(*config) {})
	p, subs, key := s.tenant("params", "web")
	// 18:29 and 18:31 UTC fall on two days in Kolkata (+05:30).
	day := time.Now().UTC().AddDate(0, 0, -2).Truncate(24 * time.Hour)
	for i, at := range []time.Time{day.Add(18*time.Hour + 29*time.Minute), day.Add(18*time.Hour + 31*time.Minute)} {
		s.must(202, "POST", "/tracking", key, ev("web", "view", "id", fmt.Sprint("kolkata-", i), "timestamp", at.Format(time.RFC3339), "userId", "ravi"), nil)
	}
	stored := "/reports/sub-systems/" + subs["web"] + "?from=" + day.Format(time.DateOnly) + "&to=" + day.Format(time.DateOnly)
	poll(t, "both events stored", 20*time.Second, func() bool {
		var rep struct{ TotalEvents int64 }
		s.must(200, "GET", stored, "admin", nil, &rep)
		return rep.TotalEvents == 2
	})

	type point struct {
		Timestamp time.Time
		Count     int64
	}
	var rep struct {
		TotalEvents int64
		Granularity string
		TZ          string
		TimeSeries  []point
	}
	q := url.Values{"from": {day.Format(time.DateOnly)}, "to": {day.AddDate(0, 0, 1).Format(time.DateOnly)},
		"granularity": {"day"}, "tz": {"Asia/Kolkata"}}
	r := s.must(200, "GET", "/reports/sub-systems/"+subs["web"]+"?"+q.Encode(), "admin", nil, nil)
	if err := json.Unmarshal(r.Data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Granularity != "day" || rep.TZ != "Asia/Kolkata" || rep.TotalEvents != 2 || len(rep.TimeSeries) != 2 {
		t.Fatalf("report: %s", r.Raw)
	}
	for i, pt := range rep.TimeSeries {
		if _, off := pt.Timestamp.Zone(); off != 5*3600+1800 || pt.Count != 1 {
			t.Fatalf("point %d: %+v (want one event a day, stamped +05:30): %s", i, pt, r.Raw)
		}
	}
	if !rep.TimeSeries[0].Timestamp.Equal(day.Add(-5*time.Hour - 30*time.Minute)) {
		t.Fatalf("the first day starts %s, want midnight in Kolkata", rep.TimeSeries[0].Timestamp)
	}
	// The partner report of the same range, by hour in UTC, top 1.
	q = url.Values{"from": {day.Format(time.RFC3339)}, "to": {day.Add(24 * time.Hour).Format(time.RFC3339)}, "granularity": {"hour"}, "top": {"1"}}
	r = s.must(200, "GET", "/reports/partners/"+p+"?"+q.Encode(), "admin", nil, nil)
	rep.TimeSeries = nil
	if err := json.Unmarshal(r.Data, &rep); err != nil || len(rep.TimeSeries) != 24 || rep.TimeSeries[18].Count != 2 || rep.TZ != "UTC" {
		t.Fatalf("partner by hour: %s", r.Raw)
	}

	// Minute points around 18:30 UTC, one event type, on the partner report;
	// unique users on each point and the range.
	q = url.Values{"from": {day.Add(18*time.Hour + 25*time.Minute).Format(time.RFC3339)}, "to": {day.Add(18*time.Hour + 35*time.Minute).Format(time.RFC3339)},
		"granularity": {"minute"}, "eventType": {"view"}}
	var byMinute struct {
		TotalEvents   int64
		EventsByType  map[string]int64
		TopEventTypes []struct {
			EventType  string
			EventCount int64
		}
		TimeSeries []struct {
			Count       int64
			UniqueUsers *int64
		}
		UniqueUsers *int64
	}
	r = s.must(200, "GET", "/reports/partners/"+p+"?"+q.Encode(), "admin", nil, nil)
	if err := json.Unmarshal(r.Data, &byMinute); err != nil || len(byMinute.TimeSeries) != 10 || byMinute.TimeSeries[4].Count != 1 ||
		byMinute.TimeSeries[6].Count != 1 || byMinute.TotalEvents != 2 || byMinute.EventsByType["view"] != 2 ||
		len(byMinute.TopEventTypes) != 1 || byMinute.UniqueUsers == nil || *byMinute.UniqueUsers != 1 ||
		byMinute.TimeSeries[4].UniqueUsers == nil || *byMinute.TimeSeries[4].UniqueUsers != 1 || *byMinute.TimeSeries[5].UniqueUsers != 0 {
		t.Fatalf("partner by minute, views only: %s", r.Raw)
	}
	// A type no event has: no users, not the partner's.
	q.Set("eventType", "click")
	r = s.must(200, "GET", "/reports/partners/"+p+"?"+q.Encode(), "admin", nil, nil)
	if err := json.Unmarshal(r.Data, &byMinute); err != nil || byMinute.TotalEvents != 0 || byMinute.UniqueUsers == nil || *byMinute.UniqueUsers != 0 ||
		byMinute.TimeSeries[4].UniqueUsers == nil || *byMinute.TimeSeries[4].UniqueUsers != 0 {
		t.Fatalf("partner by minute, clicks only: %s", r.Raw)
	}
	delete(q, "eventType")
	r = s.must(200, "GET", "/reports/partners/"+p+"?"+q.Encode(), "admin", nil, nil)
	if err := json.Unmarshal(r.Data, &byMinute); err != nil || byMinute.UniqueUsers == nil || *byMinute.UniqueUsers != 1 ||
		byMinute.TimeSeries[4].UniqueUsers == nil || *byMinute.TimeSeries[4].UniqueUsers != 1 || *byMinute.TimeSeries[5].UniqueUsers != 0 {
		t.Fatalf("partner by minute, users: %s", r.Raw)
	}

	for path, field := range map[string]string{
		"/reports/sub-systems/" + subs["web"] + "?colour=red":                 "colour",
		"/reports/sub-systems/" + subs["web"] + "?subSystemId=" + subs["web"]: "subSystemId", // partner reports only
		"/reports/sub-systems/" + subs["web"] + "?granularity=fortnight":      "granularity",
		"/reports/sub-systems/" + subs["web"] + "?granularity=minute":         "granularity", // 30 days of minutes
		"/reports/partners/" + p + "?subSystemId=" + p:                        "subSystemId", // not one of its sub-systems
		"/reports/sub-systems/" + subs["web"] + "?tz=Mars/Olympus":            "tz",
		"/reports/sub-systems/" + subs["web"] + "?tz=UTC&tz=Asia/Kolkata":     "tz",
		"/reports/partners/" + p + "?top=0":                                   "top",
		"/reports/partners/" + p + "?top=101":                                 "top",
		"/reports/partners/" + p + "?subSystemId=nope":                        "subSystemId",
		"/reports/partners/" + p + "?granularity=hour&from=2025-01-01":        "granularity",
		// What Go's url.Query drops without a word: never a report without it.
		"/reports/partners/" + p + "?eventType=click%":                          "eventType",
		"/reports/sub-systems/" + subs["web"] + "?tz=Asia/Kolkata;":             "tz",
		"/reports/partners/" + p + "?top=1;x=2":                                 "top",
		"/reports/partners/" + p + "?top=%zz":                                   "top",
		"/reports/partners/" + p + "/events?limit=2;":                           "limit",
		"/reports/partners/" + p + "/events?subSystemId=" + subs["web"] + "%zz": "subSystemId",
		"/reports/partners/" + p + "?%zz=1":                                     "%zz",
		// Not IANA names, though the zone files hold them.
		"/reports/sub-systems/" + subs["web"] + "?tz=right/Europe/Berlin": "tz",
		"/reports/sub-systems/" + subs["web"] + "?tz=Europe/./Berlin":     "tz",
		// A bound the answer names, given or not.
		"/reports/partners/" + p + "?from=2026-03-02&to=2026-03-01":                    "from",
		"/reports/partners/" + p + "?tz=Africa/Monrovia&from=1971-06-01&to=1971-06-02": "tz",
	} {
		r := s.do("GET", path, "admin", nil)
		if r.Status != 400 || r.code() != "invalid_parameter" || r.Error == nil || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != field {
			t.Errorf("%s: %d %s, want 400 naming %s", path, r.Status, r.Raw, field)
		}
	}
	// A query of many pairs, or a value without a name: 400, not a 500 or a
	// default report.
	for path, field := range map[string]string{
		"/reports/partners/" + p + "?" + strings.Repeat("&", 10000) + "top=1": "query",
		"/reports/partners/" + p + "?=x":                                      "query",
		// Every route's query is checked, not only the reports'.
		"/partners/" + p + "/dead-letters?limit=2;": "limit",
		"/partners?pageSize=%zz":                    "pageSize",
		// to at the earliest instant, from not given: to is what to change.
		"/reports/partners/" + p + "/events?to=1970-01-01T00:00:00Z": "to",
		"/reports/partners/" + p + "?to=1970-01-01T00:00:00Z":        "to",
	} {
		r := s.do("GET", path, "admin", nil)
		if r.Status != 400 || r.code() != "invalid_parameter" || r.Error == nil || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != field {
			t.Errorf("%.80s: %d %s, want 400 naming %s", path, r.Status, r.Raw, field)
		}
	}
	// Longer than any report takes: named too. A sub-system's months take
	// as long a range as a partner's days (the points are bounded anyway).
	r = s.do("GET", "/reports/partners/"+p+"?from=1990-01-01&to=2026-01-01", "admin", nil)
	if r.Status != 400 || r.code() != "range_too_large" || r.Error == nil || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != "from" {
		t.Errorf("36 years: %d %s, want 400 range_too_large naming from", r.Status, r.Raw)
	}
	s.must(200, "GET", "/reports/sub-systems/"+subs["web"]+"?from=2024-11-01&to=2026-11-01&granularity=month", "admin", nil, nil)
}
