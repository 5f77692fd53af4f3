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
