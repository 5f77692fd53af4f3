package event

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestDecode(t *testing.T) {
	lim := DefaultLimits()
	tests := []struct {
		name, body string
		code       apierr.Code
		field      string
		check      func(t *testing.T, in Input)
	}{
		{name: "minimal", body: `{"subSystemCode":"web","eventType":"click"}`, check: func(t *testing.T, in Input) {
			if in.Metadata != nil || in.Timestamp != nil || in.ID != "" {
				t.Fatalf("%+v", in)
			}
		}},
		{name: "full", body: `{"id":"ord-1","subSystemCode":" web ","eventType":" click ","metadata":{"a":[1,2]},"timestamp":"2026-05-01T13:00:00+01:00","userId":"u","anonymousId":"a"}`,
			check: func(t *testing.T, in Input) {
				if in.SubSystemCode != "web" || in.EventType != "click" || string(in.Metadata) != `{"a":[1,2]}` ||
					!in.Timestamp.Equal(now) || in.Timestamp.Location() != time.UTC {
					t.Fatalf("%+v", in)
				}
			}},
		{name: "null metadata", body: `{"subSystemCode":"w","eventType":"e","metadata":null}`, check: func(t *testing.T, in Input) {
			if in.Metadata != nil {
				t.Fatal("null metadata kept")
			}
		}},
		{name: "unicode type", body: `{"subSystemCode":"w","eventType":"xem_trang 👀"}`},
		{name: "empty", body: ``, code: apierr.InvalidJSON},
		{name: "array", body: `[]`, code: apierr.InvalidJSON},
		{name: "syntax", body: `{"a":}`, code: apierr.InvalidJSON},
		{name: "trailing garbage", body: `{"subSystemCode":"w","eventType":"e"} x`, code: apierr.InvalidJSON},
		{name: "type number", body: `{"subSystemCode":"w","eventType":5}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "code object", body: `{"subSystemCode":{},"eventType":"e"}`, code: apierr.ValidationFailed, field: "subSystemCode"},
		{name: "missing type", body: `{"subSystemCode":"w"}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "blank type", body: `{"subSystemCode":"w","eventType":"   "}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "reserved type", body: `{"subSystemCode":"w","eventType":" $other "}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "missing code", body: `{"eventType":"e"}`, code: apierr.ValidationFailed, field: "subSystemCode"},
		{name: "long type", body: `{"subSystemCode":"w","eventType":"` + strings.Repeat("x", 129) + `"}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "newline in type", body: `{"subSystemCode":"w","eventType":"a\nb"}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "metadata array", body: `{"subSystemCode":"w","eventType":"e","metadata":[1]}`, code: apierr.ValidationFailed, field: "metadata"},
		{name: "metadata too big", body: `{"subSystemCode":"w","eventType":"e","metadata":{"a":"` + strings.Repeat("x", 33<<10) + `"}}`, code: apierr.MetadataTooLarge},
		{name: "future", body: `{"subSystemCode":"w","eventType":"e","timestamp":"2026-05-01T12:11:00Z"}`, code: apierr.ValidationFailed, field: "timestamp"},
		{name: "past", body: `{"subSystemCode":"w","eventType":"e","timestamp":"2026-03-01T00:00:00Z"}`, code: apierr.ValidationFailed, field: "timestamp"},
		{name: "bad time", body: `{"subSystemCode":"w","eventType":"e","timestamp":"01/05/2026"}`, code: apierr.ValidationFailed, field: "timestamp"},
		{name: "id chars", body: `{"subSystemCode":"w","eventType":"e","id":"a/b"}`, code: apierr.ValidationFailed, field: "id"},
		{name: "long user", body: `{"subSystemCode":"w","eventType":"e","userId":"` + strings.Repeat("u", 256) + `"}`, code: apierr.ValidationFailed, field: "userId"},
		{name: "numeric timestamp", body: `{"subSystemCode":"w","eventType":"e","timestamp":1714564800}`, code: apierr.ValidationFailed, field: "timestamp"},
		{name: "object timestamp", body: `{"subSystemCode":"w","eventType":"e","timestamp":{}}`, code: apierr.ValidationFailed, field: "timestamp"},
		{name: "timestamp in year 10000", body: `{"subSystemCode":"w","eventType":"e","timestamp":"9999-12-31T23:00:00-23:00"}`, code: apierr.ValidationFailed, field: "timestamp"},
		{name: "invalid UTF-8 type", body: "{\"subSystemCode\":\"w\",\"eventType\":\"a\xffb\"}", code: apierr.ValidationFailed, field: "eventType"},
		{name: "invalid UTF-8 user", body: "{\"subSystemCode\":\"w\",\"eventType\":\"e\",\"userId\":\"\xc3\"}", code: apierr.ValidationFailed, field: "userId"},
		{name: "invalid UTF-8 metadata", body: "{\"subSystemCode\":\"w\",\"eventType\":\"e\",\"metadata\":{\"k\":\"\xed\xa0\x80\"}}", code: apierr.ValidationFailed, field: "metadata"},
		{name: "invalid UTF-8 unknown field", body: "{\"subSystemCode\":\"w\",\"eventType\":\"e\",\"x\xff\":1}", code: apierr.ValidationFailed, field: "body"},
		{name: "lone high surrogate", body: `{"subSystemCode":"w","eventType":"a\ud800b"}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "lone low surrogate", body: `{"subSystemCode":"w","eventType":"e","userId":"\udc00"}`, code: apierr.ValidationFailed, field: "userId"},
		{name: "high surrogate then text", body: `{"subSystemCode":"w","eventType":"\ud800\u0041"}`, code: apierr.ValidationFailed, field: "eventType"},
		{name: "surrogate pair", body: `{"subSystemCode":"w","eventType":"\ud83d\ude00"}`, check: func(t *testing.T, in Input) {
			if in.EventType != "😀" {
				t.Fatalf("%q", in.EventType)
			}
		}},
		{name: "escaped backslash", body: `{"subSystemCode":"w","eventType":"\\ud800"}`, check: func(t *testing.T, in Input) {
			if in.EventType != `\ud800` {
				t.Fatalf("%q", in.EventType)
			}
		}},
		{name: "two problems", body: `{"subSystemCode":"","eventType":""}`, code: apierr.ValidationFailed, field: "subSystemCode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Decode([]byte(tc.body), lim, now)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, in)
				}
				return
			}
			ae := apierr.From(err)
			if ae.Code != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			if tc.field != "" {
				found := false
				for _, f := range ae.Fields {
					found = found || f.Field == tc.field
				}
				if !found {
					t.Fatalf("field %s not named: %+v", tc.field, ae)
				}
			}
		})
	}
}

// TestDecodeMessagesSpeakJSON: a type error says what JSON to send, never a
// Go type or method name.
func TestDecodeMessagesSpeakJSON(t *testing.T) {
	var admin struct {
		Limit  *int       `json:"rateLimit"`
		Scopes []string   `json:"scopes"`
		At     *time.Time `json:"expiredAt"`
	}
	for body, field := range map[string]string{
		`{"subSystemCode":"w","eventType":"e","timestamp":1714564800}`: "timestamp",
		`{"subSystemCode":"w","eventType":"e","timestamp":"soon"}`:     "timestamp",
		`{"rateLimit":"many"}`:      "rateLimit",
		`{"rateLimit":1.5}`:         "rateLimit",
		`{"rateLimit":1e30}`:        "rateLimit",
		`{"scopes":[1]}`:            "scopes",
		`{"expiredAt":true}`:        "expiredAt",
		`{"expiredAt":"yesterday"}`: "expiredAt",
	} {
		var err error
		if strings.Contains(body, "eventType") {
			_, err = Decode([]byte(body), DefaultLimits(), now)
		} else {
			err = DecodeObject([]byte(body), &admin)
		}
		ae := apierr.From(err)
		if ae.Code != apierr.ValidationFailed || len(ae.Fields) != 1 || ae.Fields[0].Field != field {
			t.Errorf("%s: got %v, want validation_failed on %s", body, err, field)
			continue
		}
		for _, goism := range []string{"Time", "Unmarshal", "*", "int", "float", "json.", "[]"} {
			if strings.Contains(ae.Message, goism) {
				t.Errorf("%s: the message names Go (%q): %s", body, goism, ae.Message)
			}
		}
	}
}

func TestDecodeBatch(t *testing.T) {
	items, err := DecodeBatch([]byte(`{"events":[{"a":1},{"b":2}]}`), 10)
	if err != nil || len(items) != 2 {
		t.Fatal(items, err)
	}
	items, err = DecodeBatch([]byte(` [{"a":1}]`), 10)
	if err != nil || len(items) != 1 {
		t.Fatal(items, err)
	}
	for body, code := range map[string]apierr.Code{
		``: apierr.InvalidJSON, `"x"`: apierr.InvalidJSON, `{"events":[]}`: apierr.ValidationFailed, `{}`: apierr.ValidationFailed,
		`[1,2,3]`: apierr.BatchTooLarge, `{"events":5}`: apierr.ValidationFailed, `[`: apierr.InvalidJSON,
	} {
		if _, err := DecodeBatch([]byte(body), 2); apierr.From(err).Code != code {
			t.Errorf("%q: got %v, want %s", body, err, code)
		}
	}
}

// FuzzDecode: any body gets an answer or a 4xx error, never a panic, and an
// accepted input always passes its own limits.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"subSystemCode":"w","eventType":"e"}`, `{"eventType":1}`, `{"metadata":{"a":"b"},"timestamp":"2026-05-01T12:00:00Z"}`, `[]`, `{`, "\x00", `{"id":"x\u2028"}`,
		"{\"subSystemCode\":\"w\",\"eventType\":\"a\xffb\"}", `{"subSystemCode":"w","eventType":"e","timestamp":1}`,
		`{"subSystemCode":"w","eventType":"\ud800\udc00\ud800"}`} {
		f.Add([]byte(s))
	}
	lim := DefaultLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Decode(data, lim, now)
		if err != nil {
			if s := apierr.From(err).Code.Status(); s < 400 || s >= 500 {
				t.Fatalf("status %d for %q", s, data)
			}
			return
		}
		if in.EventType == "" || in.SubSystemCode == "" || len(in.Metadata) > lim.MaxMetadataBytes {
			t.Fatalf("accepted an invalid input: %+v", in)
		}
		if in.Metadata != nil && !json.Valid(in.Metadata) {
			t.Fatalf("invalid metadata kept: %q", in.Metadata)
		}
		for _, s := range []string{in.ID, in.SubSystemCode, in.EventType, in.UserID, in.AnonymousID, string(in.Metadata)} {
			// U+FFFD only where the client sent it: never a bad byte or an
			// unpaired surrogate the decoder replaced.
			sent := strings.Contains(strings.ToLower(string(data)), `\ufffd`) || strings.ContainsRune(string(data), utf8.RuneError)
			if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) && !sent {
				t.Fatalf("invalid text accepted: %q", data)
			}
		}
		if in.Timestamp != nil && !instant.Valid(*in.Timestamp) {
			t.Fatalf("timestamp out of range accepted: %v", *in.Timestamp)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{`{"events":[{}]}`, `[{},{}]`, `{"events":null}`, `[[]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := DecodeBatch(data, 100)
		if err != nil {
			if s := apierr.From(err).Code.Status(); s < 400 || s >= 500 {
				t.Fatalf("status %d", s)
			}
			return
		}
		if len(items) == 0 || len(items) > 100 {
			t.Fatalf("%d items accepted", len(items))
		}
	})
}
