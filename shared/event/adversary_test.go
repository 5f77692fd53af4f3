package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The encoder against json.Marshal over every combination of awkward
// metadata, zones, instants and strings; and the digest against its first
// version (from an adversarial review).
func TestAppendJSONEdgeCases(t *testing.T) {
	big := strings.Repeat("<é\u2028\x01\xff&", 300)
	metas := []string{
		`{"a" : "x y", "b":[1, 2]}`,
		"{\"a\":\"\u2028\u2029<>&\"}",
		"{\"a\":\"\xff\xfe\"}", // json.Valid accepts invalid UTF-8 inside strings
		" {\"a\":1}\n",
		`null`, `[]`, `{}`, `"str"`, `1e400`, `-0.0e-0`,
		`{"a":"\u003c\\u2028\/"}`,
		"{\"k\":\"\xe2\x80\"}",     // truncated U+2028 prefix
		"{\"k\":\"\xe2\x80\xa8\"}", // raw U+2028
		"{\"k\":\"\xe2\x80\xa9 \"}",
		"{\"k\":\"\xe2\"}",
		`{"` + strings.Repeat("a", 64<<10) + `":1}`,
		"\t{\r\n\"x\"\t:\t\"<\\\">\" }",
	}
	zones := []*time.Location{time.UTC, time.FixedZone("m", -(9*3600 + 30*60)), time.FixedZone("s", 3600+59), time.FixedZone("z", 0), time.Local}
	if loc, err := time.LoadLocation("Europe/Amsterdam"); err == nil {
		zones = append(zones, loc)
	}
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(1764115200, 100), time.Unix(1764115200, 120000000), time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Now()}
	strs := []string{"", "a", big, "\x7f\u00a0\ufeff", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\u2027\u202a", "a\\u003c", "\"\\/\b\f\n\r\t\x0b\x1f"}
	n := 0
	bad := map[string]bool{}
	for _, m := range metas {
		for _, z := range zones {
			for _, tm := range times {
				for _, s := range strs {
					e := Event{ID: s, PartnerID: s, SubSystemID: "s", SubSystemCode: s, EventType: s, Timestamp: tm.In(z), ReceivedAt: tm,
						UserID: s, AnonymousID: s, Metadata: json.RawMessage(m), IP: s, UserAgent: s, KeyID: s}
					want, err := json.Marshal(&e)
					if err != nil {
						continue
					}
					n++
					if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
						i := 0
						for i < len(got) && i < len(want) && got[i] == want[i] {
							i++
						}
						if bad[m] {
							continue
						}
						bad[m] = true
						t.Errorf("meta %.40q zone %v time %v str %.20q: differ at %d: got %.60q want %.60q", m, z, tm, s, i, got[i:], want[i:])
					}
				}
			}
		}
	}
	t.Logf("%d cases equal", n)
	// Digest against the first version, whitespace variants included.
	for _, m := range append(metas, "not json {", " not json", "{\"a\":1} x", "\u00a0{}", "{}\u00a0") {
		for _, s := range strs {
			e := Event{SubSystemID: s, EventType: s, UserID: s, AnonymousID: "x", Metadata: json.RawMessage(m)}
			if got, want := e.Digest(), digestV1(&e); got != want {
				t.Fatalf("digest differs for meta %.40q", m)
			}
		}
	}
}
