package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
)

// The decoders as they were before d8353d5 (encoding/json only), to hold
// Decode and DecodeBatch to: same Input, same error.
func oldDecode(data []byte, lim Limits, now time.Time) (Input, error) {
	var in Input
	if err := DecodeObject(data, &in); err != nil {
		return in, err
	}
	return in, Validate(&in, lim, now)
}

func oldDecodeBatch(data []byte, maxItems int) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, apierr.New(apierr.InvalidJSON, "the request body is empty; send {\"events\":[...]}")
	}
	var items []json.RawMessage
	switch data[0] {
	case '[':
		if err := json.Unmarshal(data, &items); err != nil {
			return nil, jsonError(err, data, &items)
		}
	case '{':
		var b Batch
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, jsonError(err, data, &b)
		}
		items = b.Events
	default:
		return nil, apierr.New(apierr.InvalidJSON, "the request body must be {\"events\":[...]} or a JSON array")
	}
	if len(items) == 0 {
		return nil, apierr.Invalid(apierr.FieldError{Field: "events", Message: "must hold at least one event"})
	}
	if len(items) > maxItems {
		return nil, apierr.New(apierr.BatchTooLarge, "the batch holds %d events; the limit is %d per request", len(items), maxItems)
	}
	return items, nil
}

func describeInput(in Input, err error) string {
	ts := "<nil>"
	if in.Timestamp != nil {
		name, off := in.Timestamp.Zone()
		ts = fmt.Sprintf("%s %s %d", in.Timestamp.Format(time.RFC3339Nano), name, off)
	}
	meta := "<nil>"
	if in.Metadata != nil {
		meta = fmt.Sprintf("%q", []byte(in.Metadata))
	}
	return fmt.Sprintf("err=%s id=%q ss=%q type=%q user=%q anon=%q ts=%s meta(%d bytes)=%s",
		describeErr(err), in.ID, in.SubSystemCode, in.EventType, in.UserID, in.AnonymousID, ts, len(in.Metadata), meta)
}

func describeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	ae := apierr.From(err)
	return fmt.Sprintf("%s %q %+v", ae.Code, ae.Message, ae.Fields)
}

func checkDecodeSame(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	newIn, newErr := Decode(data, lim, now)
	oldIn, oldErr := oldDecode(data, lim, now)
	if n, o := describeInput(newIn, newErr), describeInput(oldIn, oldErr); n != o {
		t.Errorf("%.120q:\nnew %.300s\nold %.300s", data, n, o)
	}
}

func checkBatchSame(t *testing.T, data []byte, max int) {
	t.Helper()
	newItems, newErr := DecodeBatch(data, max)
	oldItems, oldErr := oldDecodeBatch(data, max)
	if describeErr(newErr) != describeErr(oldErr) || len(newItems) != len(oldItems) {
		t.Errorf("%.120q:\nnew %d items, %s\nold %d items, %s", data, len(newItems), describeErr(newErr), len(oldItems), describeErr(oldErr))
		return
	}
	for i := range newItems {
		if !bytes.Equal(newItems[i], oldItems[i]) {
			t.Errorf("%.120q item %d: new %q old %q", data, i, newItems[i], oldItems[i])
		}
	}
}

// nested is an object whose nesting depth (the count of open brackets at
// the deepest point) is depth.
func nested(depth int) string {
	return `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
}

// DEFECT: encoding/json refuses a document nested deeper than 10000
// (json.Unmarshal: "exceeded max depth"). decodeFast checks the metadata
// alone with json.Valid, one level shallower than the body it sits in, so
// a body whose metadata is nested exactly 10000 deep (about 20 KB, under
// the 32 KiB metadata and 64 KiB body limits) was refused and is now
// accepted.
func TestParityDecodeDepthLimit(t *testing.T) {
	for _, depth := range []int{9999, 10000} {
		body := []byte(`{"subSystemCode":"web","eventType":"x","metadata":` + nested(depth) + `}`)
		t.Run(fmt.Sprint(depth), func(t *testing.T) { checkDecodeSame(t, body, DefaultLimits()) })
	}
}

// The consequence of the above: the edge answers 202 Queued, and the
// worker (workers.decode: json.Unmarshal of the message into event.Event)
// cannot decode the message it publishes, so the accepted event is
// dead-lettered as "undecodable".
func TestParityAcceptedDepthIsUndecodableDownstream(t *testing.T) {
	body := []byte(`{"subSystemCode":"web","eventType":"x","metadata":` + nested(10000) + `}`)
	in, err := Decode(body, DefaultLimits(), now)
	if err != nil {
		t.Skipf("refused (as before d8353d5): %v", err)
	}
	e := Event{ID: "i", PartnerID: "p", SubSystemID: "s", EventType: in.EventType, Timestamp: now, ReceivedAt: now, Metadata: in.Metadata}
	var back Event
	if err := json.Unmarshal(e.AppendJSON(nil), &back); err != nil {
		t.Fatalf("Decode accepted the event, but the message published for it does not decode: %v", err)
	}
}

// Everything below held: the fast paths agree with the old decoder, value
// and error, on these awkward inputs.
func TestParityDecodeAgrees(t *testing.T) {
	for _, lim := range []Limits{DefaultLimits(), {MaxMetadataBytes: 4, MaxEventTypeLen: 1, MaxIDLen: 1, MaxUserIDLen: 1, SubSystemCodeOptional: true}} {
		for _, b := range parityBodies() {
			checkDecodeSame(t, []byte(b), lim)
		}
	}
}

func parityBodies() []string {
	base := `"subSystemCode":"web","eventType":"x"`
	bodies := []string{
		// whitespace JSON does not know, which bytes.TrimSpace trims
		"\v{" + base + "}", "{" + base + "}\f", "\u00a0{" + base + "}", "{" + base + "}\u0085", "{" + base + "}\u2028",
		"\ufeff{" + base + "}", "{" + base + "}\x00", " \t\r\n{" + base + "}\r\n", "{\v" + base + "}",
		// case-insensitive, folded and escaped keys, duplicates
		`{"EventType":"y",` + base + `}`, `{` + base + `,"EVENTTYPE":"y"}`, `{` + base + `,"eventtype":"y"}`,
		`{"ſubSyſtemCode":"zz","eventType":"x"}`, `{"subSy\u017ftemCode":"zz","eventType":"x"}`,
		`{"event\u0054ype":"y",` + base + `}`, `{` + base + `,"eventType":"y"}`, `{` + base + `,"eventType":null}`,
		`{` + base + `,"id":"a","id":"b"}`, `{` + base + `,"metadata":{},"metadata":null}`, `{` + base + `,"metadata":null,"metadata":{"a":1}}`,
		`{` + base + `,"Metadata":{"b":2},"metadata":{"a":1}}`, `{` + base + `,"metadata":{"a":1},"Metadata":{"b":2}}`,
		// null and wrong types
		`{` + base + `,"id":null}`, `{` + base + `,"timestamp":null}`, `{` + base + `,"metadata":null}`, `{` + base + `,"userId":1}`,
		`{` + base + `,"userId":true}`, `{` + base + `,"userId":{}}`, `{` + base + `,"timestamp":1}`, `{"eventType":1e400,"subSystemCode":"web"}`,
		`{` + base + `,"metadata":1e400}`, `{` + base + `,"metadata":-0}`, `{` + base + `,"metadata":"s"}`, `{` + base + `,"metadata":[]}`,
		`{` + base + `,"metadata":nul}`, `{` + base + `,"metadata":nulll}`, `{` + base + `,"metadata":01}`, `{` + base + `,"metadata":1.}`,
		`{` + base + `,"metadata": {"a":1} }`, `{` + base + `,"metadata":{"a":1}` + "\t}",
		// metadata strings with brackets, quotes and backslashes, and truncations
		`{` + base + `,"metadata":{"a":"]}\"\\"}}`, `{` + base + `,"metadata":{"a":"\\"}}`, `{` + base + `,"metadata":{"a":"\"}}`,
		`{` + base + `,"metadata":{"a":"\\\"}}"}}`, `{` + base + `,"metadata":{"a":"x\`, `{` + base + `,"metadata":{"a":"x\\`, `{` + base + `,"metadata":{"a":[}]}}`,
		`{` + base + `,"metadata":{"a":1]}`, `{` + base + `,"metadata":[1}}`, `{` + base + `,"metadata":{"a":1}`, `{` + base + `,"metadata":`, `{` + base + `,`,
		`{` + base, `{"eventType":"x`, `{"eventType`, `{`, ``, ` `, `{}`, `{} `, `{}{}`, `{},`, `{` + base + `}x`, `{` + base + `}}`, `{` + base + `,}`,
		// invalid UTF-8 and surrogates, in metadata, values and keys
		"{" + base + ",\"metadata\":{\"a\":\"\xff\"}}", "{" + base + ",\"metadata\":{\"\xff\":1}}", "{" + base + ",\"userId\":\"\xed\xa0\x80\"}",
		"{" + base + ",\"\xff\":1}", `{` + base + `,"metadata":{"a":"\ud800"}}`, `{` + base + `,"metadata":{"a":"\udc00\ud800"}}`,
		`{` + base + `,"metadata":{"a":"\ud83d\ude00"}}`, `{` + base + `,"userId":"\ud83d\ude00"}`, `{` + base + `,"metadata":{"a":"\\ud800"}}`,
		"{" + base + ",\"userId\":\"a\x7fb\"}", "{" + base + ",\"userId\":\"a\x01b\"}", "{" + base + ",\"userId\":\"\u2028\"}",
		"{\"eventType\":\" \u00a0x\u00a0 \",\"subSystemCode\":\"\u3000web\"}", `{"eventType":"  ","subSystemCode":"web"}`,
		// the limits of Validate
		`{"subSystemCode":"web","eventType":"` + strings.Repeat("é", 128) + `"}`, `{"subSystemCode":"web","eventType":"` + strings.Repeat("é", 129) + `"}`,
		`{"subSystemCode":"` + strings.Repeat("w", 65) + `","eventType":"x"}`, `{` + base + `,"id":"` + strings.Repeat("a", 129) + `"}`,
		`{` + base + `,"id":"a b"}`, `{` + base + `,"id":""}`, `{` + base + `,"userId":"` + strings.Repeat("u", 256) + `"}`,
		`{` + base + `,"metadata":{"a":"` + strings.Repeat("m", 32<<10) + `"}}`, `{` + base + `,"metadata":{"a":"` + strings.Repeat("m", 32<<10-8) + `"}}`,
	}
	// timestamps: RFC 3339 variants, zones, leap seconds, out of range
	for _, ts := range []string{"2026-05-01T12:00:00Z", "2026-05-01t12:00:00z", "2026-05-01 12:00:00Z", "2026-05-01T12:00:00.123456789Z",
		"2026-05-01T12:00:00.1234567891Z", "2026-05-01T12:00:00,5Z", "2026-05-01T12:00:00.Z", "2026-05-01T13:00:00+01:00",
		"2026-05-01T12:00:00+24:00", "2026-05-01T12:00:00+23:59", "2026-05-01T12:00:00-00:00", "2026-05-01T12:00:00+0100",
		"2026-05-01T12:00:60Z", "2026-04-30T23:59:60Z", "2026-05-01T24:00:00Z", "2026-02-29T00:00:00Z", "2026-05-01T12:00Z",
		"2026-05-01", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-05-01T12:00:00Z ", " 2026-05-01T12:00:00Z",
		"2026-05-01T11:55:00+00:00", "2026-05-01T12:15:00Z", "2026-03-01T12:00:00Z", "+2026-05-01T12:00:00Z", "2026-5-1T12:00:00Z",
		"2026-05-01T12:00:00.000000000+05:30", "2026-05-01T12:00:00Z\u00a0"} {
		bodies = append(bodies, `{`+base+`,"timestamp":"`+ts+`"}`, `{`+base+`,"timestamp":"`+strings.Replace(ts, "T", `\u0054`, 1)+`"}`)
	}
	return bodies
}

func TestParityDecodeBatchAgrees(t *testing.T) {
	for _, b := range []string{
		`[{}]`, ` [ {} , 1 , "a" , null , [] , true ] `, `{"events":[{}]}`, `{"Events":[{}]}`, `{"EVENTS":[{}]}`, `{"ev\u0065nts":[{}]}`,
		`{"events":[{}],"events":[1,2]}`, `{"events":[1],"x":1}`, `{"x":1,"events":[1]}`, `{"events":null}`, `{"events":{}}`, `{"events":[]}`, `[]`,
		`[1,]`, `[,1]`, `[1 2]`, `[1]]`, `[[1]`, `[1]x`, `{"events":[1]}}`, `{"events":[1]`, "\v[1]\f", "\u00a0[1]\u2028", "\ufeff[1]",
		`["]\"\\", "\\"]`, `[{"a":"]"}, {"b":"}"}]`, "[\"\xff\"]", `["\ud800"]`, `[1e400, -0, 0.0e-0]`, `[` + strings.Repeat("1,", 500) + `1]`,
		`{"events":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}`, `{"events":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
		`{"events":[{"subSystemCode":"web","eventType":"x","metadata":` + nested(9998) + `}]}`, "",
	} {
		checkBatchSame(t, []byte(b), 500)
	}
}

// Decode and DecodeBatch against the decoders before d8353d5, whole: value
// and error (FuzzDecodeFast and FuzzSplitBatchFast compare the fast paths
// with json.Unmarshal, not the functions the edge calls).
func FuzzParityDecodeVsOld(f *testing.F) {
	for _, s := range []string{
		`{"id":"e-1","subSystemCode":"web","eventType":"page_view","userId":"u","anonymousId":"a","metadata":{"a":[1,2,{"b":"}"}]},"timestamp":"2026-05-01T12:00:00.123+05:30"}`,
		`{"subSystemCode":"web","eventType":"x","metadata":{"a":"\\"},"timestamp":"2026-05-01T11:59:60Z"}`, "\v{\"eventType\":\"x\"}",
		`{"eventType":"x","EventType":"y"}`, `{"metadata":[[[[]]]]}`, `{"metadata":null}`, `{}`,
	} {
		f.Add([]byte(s), false)
	}
	for _, s := range parityBodies() {
		if len(s) < 4096 {
			f.Add([]byte(s), false)
			f.Add([]byte(s), true)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, optional bool) {
		lim := DefaultLimits()
		lim.SubSystemCodeOptional = optional
		if optional {
			lim.MaxMetadataBytes, lim.MaxEventTypeLen, lim.MaxIDLen, lim.MaxUserIDLen = 8, 2, 2, 2
		}
		checkDecodeSame(t, data, lim)
	})
}

func FuzzParityDecodeBatchVsOld(f *testing.F) {
	for _, s := range []string{`{"events":[{"a":1}, {"b":[2,"]"]} ,3]}`, `[{},{}]`, `{"events":null}`, `[[]]`, `{"events":[],"x":1}`, "\v[1]"} {
		f.Add([]byte(s))
	}
	for _, s := range parityBodies() {
		if len(s) < 4096 {
			f.Add([]byte(`{"events":[` + s + `]}`))
			f.Add([]byte(`[` + s + `,` + s + `]`))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkBatchSame(t, data, 3)
		if t.Failed() {
			return
		}
		// and each item as the edge decodes it
		items, err := DecodeBatch(data, 3)
		if err != nil {
			return
		}
		for _, it := range items {
			checkDecodeSame(t, it, DefaultLimits())
		}
	})
}

// The views Decode and DecodeBatch hand out are capped, so an append to
// one never writes into the body (or into the next item).
func TestParityViewsAreCapped(t *testing.T) {
	body := []byte(`{"events":[{"subSystemCode":"web","eventType":"x","metadata":{"a":1}},{"subSystemCode":"web","eventType":"y","metadata":{"b":2}}]}`)
	orig := append([]byte(nil), body...)
	items, err := DecodeBatch(body, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		in, err := Decode(it, DefaultLimits(), now)
		if err != nil {
			t.Fatal(err)
		}
		_ = append(in.Metadata, "XXXX"...)
		_ = append(it, "XXXX"...)
	}
	if !reflect.DeepEqual(body, orig) {
		t.Fatalf("body changed: %q", body)
	}
}
