package workers

import (
	"math/rand/v2"
	"testing"
)

// The sequences a partner sees: a permutation of 52 bits, undone by
// showSeq, that keeps no sequence where it was nor its neighbours apart by
// their gap.
func TestSeqPermutation(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[uint64]bool{}
	for i := range 100000 {
		seq := uint64(i + 1)
		if i%2 == 1 {
			seq = r.Uint64N(1 << seqBits)
		}
		v := hideSeq(key, seq)
		if v >= 1<<seqBits || showSeq(key, v) != seq || seen[v] {
			t.Fatalf("seq %d: shown as %d, back as %d, seen %v", seq, v, showSeq(key, v), seen[v])
		}
		seen[v] = true
	}
	fixed, adjacent := 0, 0
	for seq := uint64(1); seq <= 1000; seq++ {
		if hideSeq(key, seq) == seq {
			fixed++
		}
		if d := int64(hideSeq(key, seq+1)) - int64(hideSeq(key, seq)); d == 1 || d == -1 {
			adjacent++
		}
	}
	if fixed > 0 || adjacent > 0 {
		t.Fatalf("%d sequences shown as themselves, %d neighbours kept next to each other", fixed, adjacent)
	}
	if hideSeq([]byte("another key of thirty-two bytes!"), 7) == hideSeq(key, 7) {
		t.Fatal("two keys permute alike")
	}
}
