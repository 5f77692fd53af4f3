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

// addCounts adds a row's counts into a slot's as decodeCounts would, name
// by name, and with a name set adds only that one: not a name it prefixes
// or is a prefix of, not the empty name.
func TestAddCounts(t *testing.T) {
	rows := []map[string]int64{
		{"view": 3, "viewed": 5, "vie": 7, "": 11, "click": 13},
		{"view": 17, "click": 19, "purchase": 23},
		{"viewed": 29},
		nil,
	}
	for _, name := range []string{"", "view", "vie", "viewed", "absent"} {
		got := map[string]int64{"view": 1000} // what the slot held already
		want := map[string]int64{"view": 1000}
		for _, r := range rows {
			b := encodeCounts(r)
			if err := addCounts(got, b, name); err != nil {
				t.Fatal(err)
			}
			if err := decodeCounts(b, func(k string, v int64) {
				if name == "" || k == name {
					want[k] += v
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("name %q: %v, want %v", name, got, want)
		}
	}
	// A key is the map's own string, not bytes of the blob that a later
	// row overwrites.
	got := map[string]int64{}
	b := encodeCounts(map[string]int64{"alpha": 1})
	if err := addCounts(got, b, ""); err != nil {
		t.Fatal(err)
	}
	copy(b[1:], "omega")
	if got["alpha"] != 1 || len(got) != 1 {
		t.Fatalf("the map's keys changed with the blob: %v", got)
	}
	for _, bad := range [][]byte{{5, 'a'}, {1, 'a'}, {0x80}} {
		if err := addCounts(map[string]int64{}, bad, ""); err == nil {
			t.Fatalf("%v: no error", bad)
		}
	}
}
