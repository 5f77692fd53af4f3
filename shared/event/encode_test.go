package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzAppendJSON holds the hand-written encoder to json.Marshal's bytes.
func FuzzAppendJSON(f *testing.F) {
	f.Add("e-1", "p", "s", "web", "page_view", int64(1764115200123456789), "u", "", `{"a":1}`, "127.0.0.1", "curl/8", "k")
	f.Add("<&>", "\u2028", "\x00\x1f\"\\", "", "\b\f\n\r\t", int64(0), "\xff\xfe", "é€😀", "{ \"x\" : [1, 2, \"<b>\"] }", "", "", "")
	f.Add("", "", "", "", "", int64(-1), "", "", "", "", "", "")
	f.Add("e", "p", "s", "", "t", int64(1), "", "", "{\"k\":\"\u2028\u2029\"}", "", "", "") // raw separators in metadata
	f.Fuzz(func(t *testing.T, id, partner, sub, code, typ string, nanos int64, user, anon, meta, ip, ua, key string) {
		e := Event{ID: id, PartnerID: partner, SubSystemID: sub, SubSystemCode: code, EventType: typ,
			Timestamp: time.Unix(0, nanos).UTC(), ReceivedAt: time.Unix(0, nanos/3).In(time.FixedZone("x", 5*3600+1800)),
			UserID: user, AnonymousID: anon, IP: ip, UserAgent: ua, KeyID: key}
		if json.Valid([]byte(meta)) {
			e.Metadata = json.RawMessage(meta)
		}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Skip(err)
		}
		if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
		// Text fields are made valid; metadata is copied as json.Marshal
		// copies it (the edge refuses metadata that is not UTF-8).
		if utf8.ValidString(meta) && !utf8.Valid(e.AppendJSON([]byte("x"))[1:]) {
			t.Fatal("invalid UTF-8 out")
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	e := Event{ID: "0192f7c4-6c2a-7b1e-9c3d-5e8f9a0b1c2d", PartnerID: "p-1", SubSystemID: "s-1", SubSystemCode: "web",
		EventType: "page_view", Timestamp: time.Now().UTC(), ReceivedAt: time.Now().UTC(), UserID: "u-42",
		Metadata: json.RawMessage(`{"path":"/pricing","ref":"news"}`), IP: "127.0.0.1", UserAgent: "bench", KeyID: "k-1"}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
}

// digestV1 is Digest as first written: stored claims hold its values, so
// every later version must give the same.
func digestV1(e *Event) [16]byte {
	h := sha256.New()
	meta := []byte(e.Metadata)
	var compact bytes.Buffer
	if json.Compact(&compact, meta) == nil {
		meta = compact.Bytes()
	}
	for _, f := range [][]byte{[]byte(e.SubSystemID), []byte(e.EventType), []byte(e.UserID), []byte(e.AnonymousID), meta} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var d [16]byte
	copy(d[:], h.Sum(nil))
	return d
}

func FuzzDigestStable(f *testing.F) {
	f.Add("s", "page_view", "u", "", `{"a": [1, 2]}`)
	f.Add("", "", "", "a", `not json {`)
	f.Add("s", "t", "", "", "{\"k\":\"a b\"}")
	f.Fuzz(func(t *testing.T, sub, typ, user, anon, meta string) {
		e := Event{SubSystemID: sub, EventType: typ, UserID: user, AnonymousID: anon, Metadata: json.RawMessage(meta)}
		if got, want := e.Digest(), digestV1(&e); got != want {
			t.Fatalf("digest changed: %x, was %x", got, want)
		}
	})
}

func BenchmarkDigest(b *testing.B) {
	e := Event{SubSystemID: "s-1", EventType: "page_view", UserID: "u-42", Metadata: json.RawMessage(`{"path":"/pricing","ref":"news"}`)}
	b.ReportAllocs()
	for b.Loop() {
		e.Digest()
	}
}
