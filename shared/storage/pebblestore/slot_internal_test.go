package pebblestore

import (
	"math/rand/v2"
	"testing"
	"time"
)

// parseSlot reads what slotKey writes, as time.Parse does, and refuses
// what time.Parse refuses.
func TestParseSlot(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20_000 {
		at := time.Unix(rng.Int64N(1<<36)-1<<35, 0).UTC().Truncate(time.Minute)
		k := slotKey(nil, at)
		got, err := parseSlot(k)
		if err != nil || !got.Equal(at) || got.Location() != time.UTC {
			t.Fatalf("%s: %v, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "20261126183", "2026112618300", "2026112618x0", "202613261830", "202600261830",
		"202602301830", "202611262430", "202611261860", "202611000000", "-02611261830", "2026 1261830"} {
		_, want := time.Parse(slotLayout, bad)
		if _, err := parseSlot([]byte(bad)); (err == nil) != (want == nil) || err == nil {
			t.Errorf("%q: parseSlot %v, time.Parse %v", bad, err, want)
		}
	}
}

// A counts value: its total alone without a function for the groups (a
// series of totals), every group with one, and a damaged group refused
// when the groups are read.
func TestDecodeSlot(t *testing.T) {
	v := encodeSlot(7, map[string]int64{"a": 3, "b": 4})
	if n, err := decodeSlot(v, nil); err != nil || n != 7 {
		t.Fatalf("total %d (%v)", n, err)
	}
	got := map[string]int64{}
	if n, err := decodeSlot(v, func(g []byte, n int64) { got[string(g)] = n }); err != nil || n != 7 || got["a"] != 3 || got["b"] != 4 || len(got) != 2 {
		t.Fatalf("total %d, groups %v (%v)", n, got, err)
	}
	if _, err := decodeSlot(append(v[:len(v):len(v)], 9), func([]byte, int64) {}); err == nil {
		t.Fatal("a damaged group was read")
	}
}
