package cassandrastore

import (
	"bytes"
	"fmt"
	"testing"
)

// Equal maps encode to equal bytes (IF through = ? compares them), and a
// blob decodes to the map it came from.
func TestCountsCodec(t *testing.T) {
	m := map[string]int64{"view": 3, "": 0, "buy": 1 << 40, "0190/31": 1795694609920730108}
	b := encodeCounts(m)
	for range 20 { // map order varies from run to run
		if !bytes.Equal(encodeCounts(m), b) {
			t.Fatal("the same map encoded two ways")
		}
	}
	got, err := decodeMap(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(m) {
		t.Fatalf("decoded %v (%v), want %v", got, err, m)
	}
	if v, err := countOf(b, "buy"); err != nil || v != 1<<40 {
		t.Fatalf("countOf: %d %v", v, err)
	}
	if encodeCounts(nil) != nil {
		t.Fatal("an empty map encodes to a blob")
	}
	for _, bad := range [][]byte{{5, 'a'}, {1, 'a'}, {0x80}} {
		if _, err := decodeMap(bad); err == nil {
			t.Fatalf("%x decoded", bad)
		}
	}
}

func FuzzCountsCodec(f *testing.F) {
	f.Add([]byte{4, 'v', 'i', 'e', 'w', 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMap(b)
		if err != nil {
			return
		}
		again, err := decodeMap(encodeCounts(m))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(m) {
			t.Fatalf("%x: %v, then %v (%v)", b, m, again, err)
		}
	})
}
