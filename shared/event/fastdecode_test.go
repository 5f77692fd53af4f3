package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeFast holds the fast decoder to encoding/json: whatever it
// decodes, encoding/json decodes without error to the same Input.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"id":"e-1","subSystemCode":"web","eventType":"page_view","userId":"u","anonymousId":"a","metadata":{"a":[1,2,{"b":"}"}]},"timestamp":"2026-05-01T12:00:00.123+05:30"}`,
		` {"eventType" : "x" , "metadata" : 12 } `, `{"eventType":"x","metadata":"s\"t"}`, `{"EventType":"x"}`, `{"eventType":"x","eventType":"y"}`,
		`{"eventType":"a\u0041"}`, `{"metadata":[}]}`, `{"metadata":tru}`, `{"timestamp":"2026-13-01T00:00:00Z"}`, `{}`, `{"id":"é€😀"}`,
		`{"metadata":null}`, `{"timestamp":null}`, `{"a":1}`, "{\"eventType\":\"\xff\"}", `{"eventType":"x"}x`, `{"metadata":{"k":"\ud800"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast Input
		if !decodeFast(data, &fast) {
			return
		}
		var slow Input
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast decoded %q, encoding/json refused it: %v", data, err)
		}
		if fast.ID != slow.ID || fast.SubSystemCode != slow.SubSystemCode || fast.EventType != slow.EventType ||
			fast.UserID != slow.UserID || fast.AnonymousID != slow.AnonymousID || !bytes.Equal(fast.Metadata, slow.Metadata) ||
			(fast.Metadata == nil) != (slow.Metadata == nil) || (fast.Timestamp == nil) != (slow.Timestamp == nil) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", data, fast, slow)
		}
		if fast.Timestamp != nil {
			fn, fo := fast.Timestamp.Zone()
			sn, so := slow.Timestamp.Zone()
			if !fast.Timestamp.Equal(*slow.Timestamp) || fn != sn || fo != so {
				t.Fatalf("%q: timestamp %v, encoding/json %v", data, *fast.Timestamp, *slow.Timestamp)
			}
		}
	})
}

// FuzzSplitBatchFast holds the fast bulk splitter to encoding/json.
func FuzzSplitBatchFast(f *testing.F) {
	for _, s := range []string{`{"events":[{"a":1}, {"b":[2,"]"]} ,3]}`, `[{},{}]`, `{"events":null}`, `[[]]`, `{"events":[],"x":1}`,
		`{"x":1,"events":[1]}`, ` [ "a" , "b\"" ] `, `{"Events":[1]}`, `[1,]`, `{"events":[{}]}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := splitBatchFast(data)
		if !ok {
			return
		}
		var slow []json.RawMessage
		var err error
		if d := bytes.TrimLeft(data, " \t\r\n"); len(d) > 0 && d[0] == '{' {
			var b Batch
			err = json.Unmarshal(data, &b)
			slow = b.Events
		} else {
			err = json.Unmarshal(data, &slow)
		}
		if err != nil {
			t.Fatalf("fast split %q, encoding/json refused it: %v", data, err)
		}
		if len(fast) != len(slow) {
			t.Fatalf("%q: %d items, encoding/json %d", data, len(fast), len(slow))
		}
		for i := range fast {
			if !bytes.Equal(fast[i], slow[i]) {
				t.Fatalf("%q item %d: %q, encoding/json %q", data, i, fast[i], slow[i])
			}
		}
	})
}

// Metadata nested just under encoding/json's limit of 10,000 is within it
// alone but not inside the body: the body is refused, as encoding/json
// refuses it, and never reaches a worker that could not decode it.
func TestDecodeDeepMetadata(t *testing.T) {
	for _, depth := range []int{600, 10000} {
		meta := `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		body := []byte(`{"subSystemCode":"web","eventType":"x","metadata":` + meta + `}`)
		var want Input
		werr := json.Unmarshal(body, &want)
		in, err := Decode(body, DefaultLimits(), time.Now())
		if (werr == nil) != (err == nil) {
			t.Fatalf("depth %d: Decode error %v, encoding/json error %v", depth, err, werr)
		}
		if err == nil && !bytes.Equal(in.Metadata, want.Metadata) {
			t.Fatalf("depth %d: metadata differs", depth)
		}
	}
}
