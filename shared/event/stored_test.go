package event

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameStored compares two decoded events field by field, times with their
// zones (encoding/json keeps the offset as written).
func sameStored(a, b *Event) bool {
	za, oa := a.Timestamp.Zone()
	zb, ob := b.Timestamp.Zone()
	ra, rao := a.ReceivedAt.Zone()
	rb, rbo := b.ReceivedAt.Zone()
	x, y := *a, *b
	x.Timestamp, y.Timestamp, x.ReceivedAt, y.ReceivedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a.Timestamp.Equal(b.Timestamp) && za == zb && oa == ob &&
		a.ReceivedAt.Equal(b.ReceivedAt) && ra == rb && rao == rbo &&
		(a.Metadata == nil) == (b.Metadata == nil) && reflect.DeepEqual(x, y)
}

// FuzzDecodeStored holds DecodeStored to json.Unmarshal: the same event,
// or an error both ways, whichever path it took.
func FuzzDecodeStored(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		e := randomStored(r)
		f.Add(e.AppendJSON(nil))
	}
	for _, s := range []string{
		`{}`, `{"id":"a","id":"b"}`, `{"ID":"x"}`, `{"eventType":"a\u0041"}`, `{"metadata":null}`, `{"timestamp":null}`,
		`{"timestamp":"2026-13-01T00:00:00Z"}`, `{"receivedAt":"2026-05-01T12:00:00.123456789+05:45"}`, `{"metadata":[}]}`,
		`{"metadata":{"k":"\ud800"}}`, "{\"userAgent\":\"\xff\"}", `{"keyId":"k"}x`, ` { "ip" : "1.2.3.4" } `, `{"other":1}`,
		`{"Retention":5}`, `{"-":1}`, `[]`, `null`, `{"metadata":tru}`, `{"partnerId":1}`, `{"id":"é€😀","metadata":"s\"t"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want Event
		gerr := DecodeStored(data, &got)
		werr := json.Unmarshal(data, &want)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: DecodeStored error %v, encoding/json %v", data, gerr, werr)
		}
		if gerr == nil && !sameStored(&got, &want) {
			t.Fatalf("%q:\nDecodeStored %+v\nencoding/json %+v", data, got, want)
		}
	})
}

func randomStored(r *rand.Rand) Event {
	special := r.IntN(4) == 0 // else plain text, as ids and types mostly are
	word := func() string {
		chars := "abcXYZ019-_ é€/"
		if special {
			chars += "<>&\"\\\n"
		}
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(string([]rune(chars)[r.IntN(len([]rune(chars)))]))
		}
		return b.String()
	}
	maybe := func() string {
		if r.IntN(2) == 0 {
			return ""
		}
		return word()
	}
	zones := []*time.Location{time.UTC, time.FixedZone("", 19800), time.FixedZone("", -3600*7)}
	ts := time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
	e := Event{ID: word(), PartnerID: word(), SubSystemID: word(), SubSystemCode: maybe(), EventType: word(),
		Timestamp: ts, ReceivedAt: ts.Add(time.Duration(r.IntN(1e9))), UserID: maybe(), AnonymousID: maybe(),
		IP: maybe(), UserAgent: maybe(), KeyID: maybe()}
	switch r.IntN(3) {
	case 1:
		e.Metadata = json.RawMessage(fmt.Sprintf(`{"page":"/p/%d","v":[1,2.5,{"x":%q}]}`, r.IntN(100), word()))
	case 2:
		e.Metadata = json.RawMessage(`"` + fmt.Sprint(r.IntN(100)) + `"`)
	}
	return e
}

// Events as they are stored decode the same either way, and most take the
// fast path (a body of plain strings always does).
func TestDecodeStoredAsStored(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fast := 0
	for range 2000 {
		e := randomStored(r)
		for _, body := range [][]byte{e.AppendJSON(nil), must(json.Marshal(&e))} {
			var got, want Event
			if err := DecodeStored(body, &got); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatal(err)
			}
			if !sameStored(&got, &want) {
				t.Fatalf("%s:\nDecodeStored %+v\nencoding/json %+v", body, got, want)
			}
			var probe Event
			if decodeStoredFast(body, &probe) {
				fast++
			}
		}
	}
	plain := Event{ID: "e-1", PartnerID: "p", SubSystemID: "s", EventType: "page_view", Timestamp: time.Now(), ReceivedAt: time.Now(),
		UserID: "u", Metadata: json.RawMessage(`{"a":[1,"<"]}`)}
	var probe Event
	if !decodeStoredFast(plain.AppendJSON(nil), &probe) {
		t.Fatalf("a plain stored event took the slow path: %s", plain.AppendJSON(nil))
	}
	if fast < 400 {
		t.Fatalf("only %d of 4000 bodies took the fast path", fast)
	}
}

// The metadata decoded is the event's own: a caller may reuse the body.
func TestDecodeStoredCopiesMetadata(t *testing.T) {
	e := Event{ID: "e", EventType: "t", Metadata: json.RawMessage(`{"k":1}`)}
	body := e.AppendJSON(nil)
	var got Event
	if err := DecodeStored(body, &got); err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = ' '
	}
	if string(got.Metadata) != `{"k":1}` || got.ID != "e" {
		t.Fatalf("decoded %+v changed with its body", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func BenchmarkDecodeStored(b *testing.B) {
	e := Event{ID: "ev-000123456", PartnerID: "01900000-0000-7000-8000-0000000000b1", SubSystemID: "01900000-0000-7000-8000-000000001003",
		EventType: "type-07", Timestamp: time.Now(), ReceivedAt: time.Now(), UserID: "user-01234",
		Metadata: json.RawMessage(`{"page":"/p/12","value":4431}`)}
	body := e.AppendJSON(nil)
	b.Run("fast", func(b *testing.B) {
		for range b.N {
			var got Event
			_ = DecodeStored(body, &got)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			var got Event
			_ = json.Unmarshal(body, &got)
		}
	})
}
