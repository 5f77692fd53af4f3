package reporter

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/report"
)

// TestCachedAtSplice: the cache's bytes are those of the stamped answer,
// for both reports, so a hit decodes to the answer with cachedAt set and
// nothing else changed.
func TestCachedAtSplice(t *testing.T) {
	at := time.Date(2026, 11, 26, 18, 30, 1, 123456789, time.FixedZone("x", 3600))
	n := int64(3)
	done := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	for _, v := range []interface{ Stamp(*time.Time) }{
		&report.SubSystemReport{SubSystemID: "s", TotalEvents: 3, EventsByType: map[string]int64{"a<b": 3}, UniqueUsers: &n,
			TimeSeries: []report.Point{{Timestamp: done, Count: 3}}, Freshness: report.Freshness{DataCompleteUntil: &done}},
		&report.PartnerReport{PartnerID: "p", EventsByType: map[string]int64{}},
	} {
		fresh, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		utc := at.UTC()
		v.Stamp(&utc)
		want, _ := json.Marshal(v)
		if got := withCachedAt(fresh, at); !bytes.Equal(got, want) {
			t.Errorf("spliced\n%s\nwant\n%s", got, want)
		}
	}
}
