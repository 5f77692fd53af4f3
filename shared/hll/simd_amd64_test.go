package hll

import "testing"

// The tests of the merge and the check, on the word loops alone (as on a
// CPU without AVX2), and at lengths the SIMD path takes.
func TestWordLoopsWithoutSIMD(t *testing.T) {
	if useSIMD {
		useSIMD = false
		defer func() { useSIMD = true }()
	}
	for _, f := range []func(*testing.T){TestMaxBytes, TestValidRegisters, TestWordLoops, TestUnion, TestRefusedMergeLeavesValidState, TestNibbles, TestBadNibbles, TestEncoding} {
		f(t)
	}
}

// The same merge on the word loops, for comparison.
func BenchmarkMergeDenseWords(b *testing.B) {
	defer func(was bool) { useSIMD = was }(useSIMD)
	useSIMD = false
	BenchmarkMergeDense(b)
}
