package event

import (
	"encoding/json"
	"strings"
	"testing"
)

// Hand-picked bodies where a fast decoder could part from
// encoding/json. Each must give the same event, or an error both ways.
func TestDecodeStoredEdges(t *testing.T) {
	deep := `{"id":"a","metadata":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`
	deepBad := `{"id":"a","metadata":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`
	bodies := []string{
		`{"id":"a","Id":"b"}`, `{"Id":"b","id":"a"}`, `{"ıd":"x"}`, `{"ſubSystemId":"x"}`, `{"K` + "\u212a" + `eyId":"x"}`,
		`{"keyId":"a","keyId":null}`, `{"id":null}`, `{"id":"a","id":null}`, `{"metadata":1,"metadata":2}`,
		`{"metadata": null }`, `{"metadata":nulL}`, `{"metadata":"\u0000"}`, `{"metadata":"` + "\xff" + `"}`,
		`{"metadata":{"a":1}  ,"id":"x"}`, `{"metadata":[1,2}`, `{"metadata":{"a":[}]}`, `{"metadata":1e}`, `{"metadata":-}`,
		`{"metadata":01}`, `{"metadata":1.}`, `{"metadata":tru}`, `{"metadata":"a\"}`, `{"metadata":"a\\"}`,
		`{"timestamp":"2026-01-01T00:00:00Z","timestamp":"2027-01-01T00:00:00Z"}`, `{"timestamp":"2026-01-01T00:00:00.Z"}`,
		`{"timestamp":"2026-01-01T00:00:00+24:00"}`, `{"timestamp":"2026-01-01t00:00:00z"}`, `{"timestamp":"2026-01-01 00:00:00Z"}`,
		`{"timestamp":"0000-01-01T00:00:00Z"}`, `{"timestamp":"9999-12-31T23:59:59.999999999-23:59"}`, `{"timestamp":" 2026-01-01T00:00:00Z"}`,
		`{"timestamp":"2026-01-01T00:00:00,5Z"}`, `{"receivedAt":""}`, `{"timestamp":"\u0032026-01-01T00:00:00Z"}`,
		"{\"id\":\"a\"}\x00", "\ufeff{\"id\":\"a\"}", "{\"id\":\"a\"}\v", "{\n\t\"id\"\r:\"a\"}", `{"id":"a",}`, `{,"id":"a"}`, `{"id":"a"}{}`,
		`{"id":"a" "eventType":"b"}`, `{"id" "a"}`, `{"":"a"}`, `{"Retention":1}`, `{"retention":"x"}`, `{"-":"x"}`,
		`{"id":"` + "\x7f" + `"}`, `{"id":"` + "\xed\xa0\x80" + `"}`, `{"id":"` + "\xef\xbf\xbe" + `"}`, `{"id":"\u2028"}`,
		deep, deepBad, `{"metadata":{}}`, `{"metadata":[]}`, `{"metadata":""}`, `{"metadata":0}`, `{"metadata":false}`,
		`{"ip":1}`, `{"userAgent":{}}`, `{"subSystemCode":[]}`, `{"metadata":{"a":1}}garbage`, `{"metadata":{"a":"}"}}`,
	}
	for _, b := range bodies {
		var got, want Event
		gerr := DecodeStored([]byte(b), &got)
		werr := json.Unmarshal([]byte(b), &want)
		if (gerr == nil) != (werr == nil) {
			t.Errorf("%.80q: DecodeStored error %v, encoding/json %v", b, gerr, werr)
			continue
		}
		if gerr == nil && !sameStored(&got, &want) {
			t.Errorf("%.80q:\nDecodeStored %+v\nencoding/json %+v", b, got, want)
		}
	}
}
