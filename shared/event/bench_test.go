package event

import (
	"testing"
	"time"
)

// BenchmarkDecode is decode and validation of one event body, as the edge
// does for a single event and for each item of a bulk.
func BenchmarkDecode(b *testing.B) {
	body := []byte(`{"id":"0192f7c4-6c2a-7b1e-9c3d-5e8f9a0b1c2d","subSystemCode":"web","eventType":"page_view","userId":"u-42","anonymousId":"a-0b7c","metadata":{"path":"/pricing","ref":"news","plan":"pro"}}`)
	lim := DefaultLimits()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body, lim, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBatch splits a bulk of 100 into its items (each item is
// then decoded as in BenchmarkDecode).
func BenchmarkDecodeBatch(b *testing.B) {
	item := `{"subSystemCode":"web","eventType":"page_view","userId":"u-42","metadata":{"path":"/pricing"}}`
	body := []byte(`{"events":[` + item)
	for i := 1; i < 100; i++ {
		body = append(body, ","+item...)
	}
	body = append(body, "]}"...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(body, 500); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
