package report

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// A Series encodes to the bytes encoding/json gives the same []Point, in
// zones with odd offsets, with and without users, and fails where it does.
func TestSeriesEncodesAsPoints(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	kathmandu, err := time.LoadLocation("Asia/Kathmandu")
	if err != nil {
		t.Fatal(err)
	}
	users := int64(12345)
	zero := int64(0)
	t0 := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	for _, pts := range [][]Point{
		nil,
		{},
		{{Timestamp: t0, Count: 3}},
		{{Timestamp: t0.In(kolkata), Count: -1, UniqueUsers: &users}, {Timestamp: t0.Add(time.Hour).In(kathmandu), UniqueUsers: &zero}},
		{{Timestamp: t0.Add(123456789).In(time.FixedZone("", -9*3600-30*60)), Count: 1 << 62}},
		{{Timestamp: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}, {Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
	} {
		want, err := json.Marshal(pts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(Series(pts))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encoded %s (%v), want %s", got, err, want)
		}
		var back Series
		if err := json.Unmarshal(got, &back); err != nil || len(back) != len(pts) {
			t.Fatalf("decoded %v (%v)", back, err)
		}
	}
	for _, bad := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := json.Marshal([]Point{{Timestamp: bad}}); err == nil {
			t.Fatal("encoding/json encodes a year past 9999")
		}
		if b, err := json.Marshal(Series{{Timestamp: bad}}); err == nil {
			t.Fatalf("a point in year %d encoded: %s", bad.Year(), b)
		}
	}
}
