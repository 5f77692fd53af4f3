package cassandrastore

import (
	"encoding/binary"
	"testing"
)

// Review: any bytes decode to an error or to entries of hours 0-23 whose
// counts and expiries are in range, never a panic; an entry dropped is one
// expired at now; a seal encoded from entries decodes to them.
func FuzzReviewDecodeSealed(f *testing.F) {
	var e packEntries
	var exp [24]int64
	for _, h := range []int{0, 5, 23} {
		e.n[h], e.has = int64(h*1000+7), e.has|1<<h
	}
	exp[5], exp[23] = 1_000, 2_000
	f.Add(encodeSealed(e, &exp), int64(1_500))
	f.Add([]byte{sealedVersion, 0, 0, 0, 0}, int64(0))
	f.Add([]byte{sealedVersion, 0x00, 0xff, 0xff, 0xff}, int64(0))
	f.Add([]byte{sealedVersion, 0x80, 0, 0, 1, 1, 0}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, now int64) {
		got, gotExp, err := decodeSealed(b, now)
		if err != nil {
			return
		}
		if got.has>>24 != 0 {
			t.Fatalf("hours past 23: %#x", got.has)
		}
		all, allExp, err := decodeSealed(b, -1<<62) // nothing expired yet
		if err != nil {
			t.Fatalf("decodes at %d, not before: %v", now, err)
		}
		for h := range 24 {
			if got.has&(1<<h) == 0 {
				if all.has&(1<<h) != 0 && (allExp[h] == 0 || allExp[h] > now) {
					t.Fatalf("hour %d dropped at %d, expiring %d", h, now, allExp[h])
				}
				continue
			}
			if got.n[h] < 0 || got.n[h] > 1<<62 || gotExp[h] < 0 || gotExp[h] > 1<<40 {
				t.Fatalf("hour %d: %d expiring %d", h, got.n[h], gotExp[h])
			}
			if gotExp[h] != 0 && gotExp[h] <= now {
				t.Fatalf("hour %d kept at %d, expired %d", h, now, gotExp[h])
			}
		}
		// Re-encoded, the same entries.
		again, againExp, err := decodeSealed(encodeSealed(all, &allExp), -1<<62)
		if err != nil || again != all || againExp != allExp {
			t.Fatalf("round trip: %+v %v, %v; want %+v %v", again, againExp, err, all, allExp)
		}
		if len(b) >= 5 && binary.BigEndian.Uint32(b[1:]) != all.has {
			t.Fatalf("bitmap %#x, decoded %#x", binary.BigEndian.Uint32(b[1:]), all.has)
		}
	})
}
