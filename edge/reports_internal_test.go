package edge

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
)

// Empty values, and a bound given under both its names, answer 400 naming
// the parameter: never a silent default. (Found by review.)
func TestEmptyAndDoubledParams(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for raw, field := range map[string]string{
		"from=": "from", "to=": "to", "granularity=": "granularity", "tz=": "tz", "eventType=%20": "eventType",
		"subSystemId=": "subSystemId", "top=": "top",
		"from=2026-05-01&startDate=2020-01-01": "startDate", "to=2026-05-02&endDate=2020-01-01": "endDate",
	} {
		q, _ := url.ParseQuery(raw)
		_, _, _, _, err := reportParams(q, partnerReportParams, now)
		if ae := apierr.From(err); err == nil || ae.Code != apierr.InvalidParameter || len(ae.Fields) != 1 || ae.Fields[0].Field != field {
			t.Errorf("%s: %v, want 400 naming %s", raw, err, field)
		}
	}
	for _, raw := range []string{"limit=", "cursor=", "from="} {
		q, _ := url.ParseQuery(raw)
		if err := checkParams(q, eventsParams); err == nil {
			t.Errorf("events %s: accepted", raw)
		}
	}
	// The same date under one name is fine.
	q, _ := url.ParseQuery("startDate=2026-05-01&endDate=2026-05-02")
	if _, _, _, _, err := reportParams(q, partnerReportParams, now); err != nil {
		t.Fatal(err)
	}
}

// A date is the day's first instant in the report's zone, where DST skips
// midnight too; a date as `to` ends with that day. (Found by review.)
func TestDateBoundsSkippedMidnight(t *testing.T) {
	loc, _ := time.LoadLocation("America/Santiago")
	from, err := parseTime("from", "2025-09-07", false, loc)
	if err != nil {
		t.Fatal(err)
	}
	to, err := parseTime("to", "2025-09-07", true, loc)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 9, 7, 4, 0, 0, 0, time.UTC); !from.Equal(want) {
		t.Errorf("from=2025-09-07: %s, want 01:00-03:00", from.In(loc).Format(time.RFC3339))
	}
	if want := time.Date(2025, 9, 8, 3, 0, 0, 0, time.UTC); !to.Equal(want) {
		t.Errorf("to=2025-09-07: %s, want the end of that day", to.In(loc).Format(time.RFC3339))
	}
}

// A bound whose offset's + came as a space is refused with how to send it,
// naming its parameter. (Found by review: the edge had replaced the hint.)
func TestBoundTellsHowToSendPlus(t *testing.T) {
	_, err := parseTime("from", "2026-11-01T00:00:00 07:00", false, time.UTC)
	var ae *apierr.Error
	if !errors.As(err, &ae) || len(ae.Fields) != 1 || ae.Fields[0].Field != "from" || !strings.Contains(ae.Message, "%2B") {
		t.Fatalf("%v", err)
	}
}
