package hll

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func users(s *Sketch, prefix string, from, to int) {
	for i := from; i < to; i++ {
		s.Add(fmt.Sprintf("%s%d", prefix, i))
	}
}

func relErr(est uint64, n int) float64 { return math.Abs(float64(est)-float64(n)) / float64(n) }

// The acceptance: 100,000 known users, counted within the documented error
// (three standard errors: 99.7% of estimates), on several independent sets.
func TestHundredThousandUsers(t *testing.T) {
	var worst, sum float64
	for set := 0; set < 10; set++ {
		var s Sketch
		users(&s, fmt.Sprintf("set%d-user-", set), 0, 100_000)
		e := relErr(s.Estimate(), 100_000)
		worst, sum = max(worst, e), sum+e
		if e > 3*StdError {
			t.Errorf("set %d: estimate %d for 100,000 users: error %.2f%% > %.2f%%", set, s.Estimate(), 100*e, 300*StdError)
		}
	}
	t.Logf("100,000 users, 10 sets: worst error %.2f%%, mean %.2f%% (standard error %.2f%%)", 100*worst, 10*sum, 100*StdError)
}

// Across the range (where plain HyperLogLog needs bias tables) the
// estimator stays within the error, and small counts are exact or nearly.
func TestAcrossSizes(t *testing.T) {
	var s Sketch
	n := 0
	for _, target := range []int{1, 2, 10, 100, 500, 1000, 4000, 10_000, 20_000, 40_000, 80_000, 160_000, 400_000} {
		users(&s, "u", n, target)
		n = target
		est := s.Estimate()
		limit := 3 * StdError
		if n <= 1000 {
			limit = 0.01
		}
		if e := relErr(est, n); e > limit {
			t.Errorf("%d users: estimate %d (error %.2f%% > %.2f%%)", n, est, 100*e, 100*limit)
		}
	}
	var empty Sketch
	if empty.Estimate() != 0 || !empty.Empty() {
		t.Fatalf("empty sketch estimates %d", empty.Estimate())
	}
}

// Merging is idempotent, commutative and equal to counting the union:
// what makes a redelivered batch or a repeated fold harmless.
func TestMergeIdempotent(t *testing.T) {
	for _, n := range []int{50, 700, 3000, 30_000} { // sparse, sparse with shared registers, turning dense, dense
		var a, b, union Sketch
		users(&a, "x", 0, n)
		users(&b, "x", n/2, 2*n) // overlapping
		users(&union, "x", 0, 2*n)

		var ab, ba, twice Sketch
		ab.Merge(&a)
		ab.Merge(&b)
		ba.Merge(&b)
		ba.Merge(&a)
		twice.Merge(&a)
		twice.Merge(&b)
		twice.Merge(&a)
		twice.Merge(&b)
		twice.Merge(&twice)
		for name, got := range map[string]*Sketch{"a+b": &ab, "b+a": &ba, "a+b+a+b": &twice} {
			if regs(got) != regs(&union) {
				t.Errorf("n=%d %s: registers differ from the union's", n, name)
			}
			if got.Estimate() != union.Estimate() {
				t.Errorf("n=%d %s: estimate %d != union's %d", n, name, got.Estimate(), union.Estimate())
			}
		}
		// Through the encoding too.
		var viaBytes Sketch
		for range 3 {
			if err := viaBytes.MergeBinary(a.Append(nil)); err != nil {
				t.Fatal(err)
			}
			if err := viaBytes.MergeBinary(b.Append(nil)); err != nil {
				t.Fatal(err)
			}
		}
		if regs(&viaBytes) != regs(&union) {
			t.Errorf("n=%d: merged encodings' registers differ from the union's", n)
		}
	}
}

// A Union's estimate and registers are those of the sketches merged, for
// sparse and dense parts, and one Union serves many unions in turn.
func TestUnion(t *testing.T) {
	var u Union
	for round, sizes := range [][]int{{0}, {1}, {170, 170, 170, 170}, {3000, 5, 900}, {20_000, 300}, {40, 20_000, 20_000}, {600}} {
		var merged, into Sketch
		users(&into, "into", 0, 10)
		wantInto := into
		wantInto.sparse = slices.Clone(into.sparse)
		for i, n := range sizes {
			var part Sketch
			users(&part, fmt.Sprintf("r%d-%d-", round, i), 0, n)
			users(&part, "shared", 0, n/3) // overlaps between the parts
			merged.Merge(&part)
			if err := u.MergeBinary(part.Append(nil)); err != nil {
				t.Fatal(err)
			}
		}
		wantInto.Merge(&merged)
		if got, want := u.Flush(&into), merged.Estimate(); got != want {
			t.Errorf("round %d %v: union estimate %d, merged %d", round, sizes, got, want)
		}
		if regs(&into) != regs(&wantInto) {
			t.Errorf("round %d %v: flushed into registers differ", round, sizes)
		}
	}
	if err := u.MergeBinary([]byte{tagSparse, 0, 2, 1, 0, 1, 1}); err != ErrCorrupt {
		t.Errorf("out of order entries: %v", err)
	}
}

// regs is the sketch's registers, whatever its representation.
func regs(s *Sketch) [M]uint8 {
	var r [M]uint8
	if s.dense != nil {
		copy(r[:], s.dense)
	}
	s.compact()
	for _, e := range s.sparse {
		r[e>>8] = uint8(e)
	}
	return r
}

func TestEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 100, 2000, 3000, maxSparse, maxSparse * 3, 1_000_000} {
		var s Sketch
		users(&s, "e", 0, n)
		b := s.Append(nil)
		var back Sketch
		if err := Check(b); err != nil {
			t.Fatalf("n=%d: a sketch's encoding does not check: %v", n, err)
		}
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(back.Append(nil), b) || back.Estimate() != s.Estimate() || regs(&back) != regs(&s) {
			t.Fatalf("n=%d: round trip changed the sketch", n)
		}
		r := regs(&s)
		if want := smallest(r[:]); len(b) != want {
			t.Fatalf("n=%d: encoding is %d bytes (tag %d), the smallest form is %d", n, len(b), b[0], want)
		}
	}
	for _, bad := range [][]byte{{9}, {tagDense, 1, 2}, {tagSparse, 0}, {tagSparse, 0xff, 0xff, 1}, {tagSparse, 0, 1, 0}, {tagSparse, 0, 1, q + 2},
		{tagSparse, 0, 2, 1, 0, 1, 1}, {tagSparse, 0, 1, 1, 0, 1, 2}, {tagNibble}, {tagNibble, 0, 0}} { // out of order, repeated
		var s Sketch
		if err := s.UnmarshalBinary(bad); err == nil {
			t.Errorf("% x decoded as a sketch", bad)
		}
		if Check(bad) == nil {
			t.Errorf("% x checked as a sketch", bad)
		}
	}
}

// smallest is the length of the smallest of the three forms of registers r,
// counted independently of the encoder.
func smallest(r []uint8) int {
	nz, lo := 0, 255
	for _, v := range r {
		if v != 0 {
			nz++
		}
		lo = min(lo, int(v))
	}
	base, exc := min(lo, q+1-15), 0
	for _, v := range r {
		if int(v) > base+15 {
			exc++
		}
	}
	return min(1+3*nz, 1+1+M/2+2+3*exc, 1+M)
}

// Registers of every shape, in each of the three forms: each decodes to
// its registers (as a sketch and as a union) and re-encodes to itself.
func TestNibbles(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	shapes := map[string]func(i int) uint8{
		"zeros and small":     func(i int) uint8 { return uint8(rng.IntN(8)) },
		"a few over 15":       func(i int) uint8 { return uint8(rng.IntN(15) + 1 + 30*btoi(rng.IntN(500) == 0)) },
		"all high (base > 0)": func(i int) uint8 { return uint8(20 + rng.IntN(14)) },
		"base capped":         func(i int) uint8 { return uint8(q + 1 - rng.IntN(3)) },
		"exactly base+15":     func(i int) uint8 { return uint8(3 + 15*(i%2)) },
		"many exceptions":     func(i int) uint8 { return uint8(rng.IntN(q + 2)) },
		"one register":        func(i int) uint8 { return uint8(btoi(i == M-1) * 40) },
		"first and last half": func(i int) uint8 { return uint8(btoi(i == 0 || i == M/2-1 || i == M/2 || i == M-1) * (q + 1)) },
		"every value, spread": func(i int) uint8 { return uint8(i % (q + 2)) },
		"a sparse sketch's":   func(i int) uint8 { return uint8(btoi(i%7 == 0) * (1 + i%20)) },
		// base+15 itself (no exception) beside exceptions, in every word.
		"base+15 by exceptions": func(i int) uint8 { return [...]uint8{15, uint8(16 + i%20), 0, 3, 15, 1, 0, 2}[i%8] },
		// Sparse would be larger than a byte a register: dense it is.
		"sparse over dense": func(i int) uint8 { return uint8(40*btoi(i < 4000) + btoi(i >= 4000 && i < 6000)) },
	}
	forms := map[byte]bool{}
	for name, f := range shapes {
		r := make([]uint8, M)
		for i := range r {
			r[i] = f(i)
		}
		b := appendRegisters(nil, r)
		forms[b[0]] = true
		if len(b) != smallest(r) {
			t.Errorf("%s: %d bytes, the smallest form is %d", name, len(b), smallest(r))
		}
		if err := Check(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var s Sketch
		if err := s.MergeBinary(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := regs(&s); !bytes.Equal(got[:], r) {
			t.Fatalf("%s (tag %d): registers differ after a round trip", name, b[0])
		}
		if !bytes.Equal(s.Append(nil), b) {
			t.Fatalf("%s: re-encoding differs", name)
		}
		// Into a union holding registers already: the max of both.
		var u Union
		other := make([]uint8, M)
		for i := range other {
			other[i] = uint8(rng.IntN(q + 2))
		}
		if err := u.MergeBinary(append([]byte{tagDense}, other...)); err != nil {
			t.Fatal(err)
		}
		if err := u.MergeBinary(b); err != nil {
			t.Fatal(err)
		}
		for i := range r {
			if u.regs[i] != max(r[i], other[i]) {
				t.Fatalf("%s: union register %d is %d, want max(%d, %d)", name, i, u.regs[i], r[i], other[i])
			}
		}
		u.Flush(nil)
	}
	for _, tag := range []byte{tagSparse, tagNibble, tagDense} {
		if !forms[tag] {
			t.Errorf("no shape was encoded with tag %d", tag)
		}
	}
}

// A sparse sketch and a dense one with the same registers encode alike,
// around the size where nibbles become the smaller form, with registers
// at 15 and 16 (the edge of an exception).
func TestCanonicalSparseAndDense(t *testing.T) {
	for nz := 2700; nz <= 2900; nz++ {
		enc := []byte{tagSparse}
		r := make([]uint8, M)
		for k := range nz {
			i := k * (M / nz)
			r[i] = uint8(1 + k%15) // up to 15: no exception
			if k%50 == 0 {
				r[i] = 16 // an exception
			}
			enc = append(enc, uint8(i>>8), uint8(i), r[i])
		}
		var sparse Sketch
		if err := sparse.UnmarshalBinary(enc); err != nil {
			t.Fatal(err)
		}
		dense := Dense()
		if err := dense.MergeBinary(enc); err != nil {
			t.Fatal(err)
		}
		a, b := sparse.Append(nil), dense.Append(nil)
		if !bytes.Equal(a, b) || !bytes.Equal(a, appendRegisters(nil, r)) {
			t.Fatalf("%d registers: sparse encodes as %d bytes (tag %d), dense as %d (tag %d)", nz, len(a), a[0], len(b), b[0])
		}
		if len(a) != smallest(r) {
			t.Fatalf("%d registers: %d bytes, the smallest form is %d", nz, len(a), smallest(r))
		}
	}
}

// A sparse sketch that its own pending additions turn dense, refusing a
// merge whose second entry is bad, holds the registers it held.
func TestRefusedMergeIntoSketchTurningDense(t *testing.T) {
	var s Sketch
	for i := 0; ; i++ {
		s.Add(fmt.Sprint("d", i))
		if s.dense != nil {
			t.Fatal("turned dense before the test could catch it")
		}
		if len(s.tmp) == 0 {
			continue
		}
		probe := Sketch{sparse: slices.Clone(s.sparse), tmp: slices.Clone(s.tmp)}
		if probe.compact(); probe.dense != nil {
			break // the next compaction turns s dense
		}
	}
	before := Sketch{sparse: slices.Clone(s.sparse), tmp: slices.Clone(s.tmp)}
	idx := 0
	for regs(&before)[idx] == q+1 {
		idx++
	}
	bad := []byte{tagSparse, uint8(idx >> 8), uint8(idx), q + 1, 0, 0, 1} // then out of order
	if err := s.MergeBinary(bad); err != ErrCorrupt {
		t.Fatalf("merged: %v", err)
	}
	if regs(&s) != regs(&before) {
		t.Fatal("a refused merge changed the registers")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Every way a nibble encoding can be wrong is refused by Check, by a
// sketch and by a union, and leaves a sketch unchanged.
func TestBadNibbles(t *testing.T) {
	r := make([]uint8, M)
	for i := range r {
		r[i] = uint8(2 + i%10)
	}
	r[5], r[M/2+9], r[M-1] = 40, 30, q+1
	good := appendRegisters(nil, r)
	if good[0] != tagNibble || good[1] != 2 {
		t.Fatalf("test registers encode as tag %d base %d", good[0], good[1])
	}
	h := M / 2
	exc := nibbleSize(0) // offset of the first exception
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	bad := map[string][]byte{
		"base too high":           edit(func(b []byte) []byte { b[1] = nibbleMaxBase + 1; return b }),
		"short":                   good[:len(good)-1],
		"long":                    append(bytes.Clone(good), 0),
		"count too high":          edit(func(b []byte) []byte { b[2+h+1]++; return b }),
		"count too low":           edit(func(b []byte) []byte { b[2+h+1]--; return b }),
		"exceptions out of order": edit(func(b []byte) []byte { copy(b[exc:], good[exc+3:exc+6]); copy(b[exc+3:], good[exc:exc+3]); return b }),
		"exception not marked 15": edit(func(b []byte) []byte { b[2+5] &^= 1; return b }),
		"exception at base+15":    edit(func(b []byte) []byte { b[exc+2] = 2 + 15; return b }),
		"exception over q+1":      edit(func(b []byte) []byte { b[len(b)-1] = q + 2; return b }),
		"exception index past M":  edit(func(b []byte) []byte { b[len(b)-3] = 0xff; return b }),
		"no packed registers":     {tagNibble, 0, 0, 0},
		// Without exceptions, so only the base or the length can refuse.
		"base too high, no exceptions": append(append([]byte{tagNibble, nibbleMaxBase + 1}, bytes.Repeat([]byte{0xff}, h)...), 0, 0),
		"short, no exceptions":         append(append([]byte{tagNibble, 0}, bytes.Repeat([]byte{0x11}, h)...), 0),
	}
	for name, b := range bad {
		if Check(b) == nil {
			t.Errorf("%s: checked as a sketch", name)
		}
		var s Sketch
		users(&s, "x", 0, 50)
		before := s.Append(nil)
		if err := s.MergeBinary(b); err != ErrCorrupt {
			t.Errorf("%s: merged: %v", name, err)
		}
		if !bytes.Equal(s.Append(nil), before) {
			t.Errorf("%s: a refused merge changed the sketch", name)
		}
		var u Union
		if err := u.MergeBinary(b); err != ErrCorrupt {
			t.Errorf("%s: union merged: %v", name, err)
		}
		if u.Flush(nil) != 0 {
			t.Errorf("%s: a refused union merge took registers", name)
		}
	}
}

// The hash is part of the stored format: it must never change.
func TestHashStable(t *testing.T) {
	for in, want := range map[string]uint64{"": Hash(""), "user-1": Hash("user-1")} {
		if Hash(in) != want {
			t.Fatal("unstable")
		}
	}
	got := fmt.Sprintf("%016x %016x %016x", Hash(""), Hash("user-1"), Hash("anon-9f2c"))
	if got != wantHashes {
		t.Fatalf("Hash changed: %s, stored sketches were made with %s", got, wantHashes)
	}
}

const wantHashes = "efd01f60ba992926 41a2fca5c68401c5 668a1aca3cbeef9e"

func FuzzMergeBinary(f *testing.F) {
	var s Sketch
	users(&s, "f", 0, 20)
	f.Add(s.Append(nil))
	f.Add([]byte{tagDense})
	var big Sketch
	users(&big, "f", 0, 10_000)
	f.Add(big.Append(nil)) // nibbles
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Sketch
		err := s.MergeBinary(b)
		if (Check(b) == nil) != (err == nil) {
			t.Fatalf("Check and MergeBinary disagree on % x: %v", b, err)
		}
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes to the same.
		var back Sketch
		if err := back.UnmarshalBinary(s.Append(nil)); err != nil || back.Estimate() != s.Estimate() {
			t.Fatalf("re-encoding failed: %v", err)
		}
	})
}

func BenchmarkAdd(b *testing.B) {
	var s Sketch
	for i := 0; b.Loop(); i++ {
		s.AddHash(uint64(i) * 0x9e3779b97f4a7c15)
	}
}

// Merging many small sketches, as a report does for each of its points.
func BenchmarkMergeSparse(b *testing.B) {
	var parts [][]byte
	for i := range 30 {
		var s Sketch
		users(&s, fmt.Sprint("p", i, "-"), 0, 600)
		parts = append(parts, s.Append(nil))
	}
	b.ReportAllocs()
	for b.Loop() {
		var s Sketch
		for _, p := range parts {
			if err := s.MergeBinary(p); err != nil {
				b.Fatal(err)
			}
		}
		_ = s.Estimate()
	}
}

// The word-at-a-time max equals the byte-by-byte one for every register
// value a sketch can hold.
func TestMaxBytes(t *testing.T) {
	// Every pair of register values, in the word loop (32 a step) and in
	// the tail after it.
	for x := range q + 2 {
		for y := range q + 2 {
			a, b := bytes.Repeat([]byte{uint8(x)}, 33), bytes.Repeat([]byte{uint8(y)}, 33)
			maxBytes(a, b)
			if want := uint8(max(x, y)); !bytes.Equal(a, bytes.Repeat([]byte{want}, 33)) {
				t.Fatalf("max(%d, %d) = %v", x, y, a)
			}
		}
	}
}

func TestValidRegisters(t *testing.T) {
	for v := range 256 {
		for pos := range 33 { // in the word loop and in the tail
			regs := make([]uint8, 33)
			regs[pos] = uint8(v)
			if got := validRegisters(regs); got != (v <= q+1) {
				t.Fatalf("register %d at %d: valid %v", v, pos, got)
			}
		}
	}
}

// maxBytes is a byte-by-byte max for valid registers, and validRegisters
// refuses any register over q+1, at every position and length (the word
// loops take 32 at a time).
func TestWordLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		n := rng.IntN(100) + 1
		a, b := make([]uint8, n), make([]uint8, n)
		for i := range a {
			a[i], b[i] = uint8(rng.IntN(q+2)), uint8(rng.IntN(q+2))
		}
		want := make([]uint8, n)
		for i := range a {
			want[i] = max(a[i], b[i])
		}
		if !validRegisters(b) {
			t.Fatalf("valid registers %v refused", b)
		}
		maxBytes(a, b)
		if !bytes.Equal(a, want) {
			t.Fatalf("maxBytes: %v, want %v", a, want)
		}
		b[rng.IntN(n)] = uint8(q + 2 + rng.IntN(256-q-2))
		if validRegisters(b) {
			t.Fatalf("invalid registers %v accepted", b)
		}
	}
}

// A refused merge never leaves an invalid register: the sketch or union
// still estimates and encodes, and serves the next merge.
func TestRefusedMergeLeavesValidState(t *testing.T) {
	var good Sketch
	users(&good, "g", 0, 30_000) // dense
	bad := append([]byte{tagDense}, good.dense...)
	bad[1+M/2] = q + 9
	var s Sketch
	users(&s, "s", 0, 20_000)
	before := s.Append(nil)
	if err := s.MergeBinary(bad); err != ErrCorrupt {
		t.Fatalf("a dense sketch with register %d: %v", q+9, err)
	}
	if !bytes.Equal(s.Append(nil), before) || Check(s.Append(nil)) != nil {
		t.Fatal("a refused dense merge changed the sketch")
	}
	var u Union
	if err := u.MergeBinary(bad); err != ErrCorrupt {
		t.Fatalf("union: %v", err)
	}
	if err := u.MergeBinary(good.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := u.Flush(nil), good.Estimate(); got != want {
		t.Fatalf("union after a refused merge: %d, want %d", got, want)
	}
	var one Sketch
	one.Add("only")
	if err := u.MergeBinary(one.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if got := u.Flush(nil); got != 1 {
		t.Fatalf("the next union of one user: %d", got)
	}
}

func BenchmarkMergeDense(b *testing.B) {
	var x, y Sketch
	users(&x, "a", 0, 50_000)
	users(&y, "b", 0, 50_000)
	enc := append([]byte{tagDense}, y.dense...) // the byte-a-register form
	b.SetBytes(M)
	for b.Loop() {
		if err := x.MergeBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// A dense sketch as stored: two registers a byte.
func BenchmarkMergeNibbles(b *testing.B) {
	var x, y Sketch
	users(&x, "a", 0, 50_000)
	users(&y, "b", 0, 10_000)
	enc := y.Append(nil)
	if enc[0] != tagNibble {
		b.Fatalf("tag %d", enc[0])
	}
	b.SetBytes(M)
	for b.Loop() {
		if err := x.MergeBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// Encoding a dense sketch, as a fold does for every dense slot it writes.
func BenchmarkAppendDense(b *testing.B) {
	var x Sketch
	users(&x, "a", 0, 10_000)
	buf := x.Append(nil)
	for b.Loop() {
		buf = x.Append(buf[:0])
	}
}

// The AVX2 merge and check agree with the word loops at lengths around the
// 128-register step; an invalid value (just over the limit, and with the
// top bit set) is refused at every position of three steps and a tail, and
// of one step and a tail.
func TestSIMD(t *testing.T) {
	if !useSIMD {
		t.Skip("no AVX2 here: the word loops are all there is")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 127, 128, 129, 255, 256, 384, 1000, M, M + 5} {
		for range 20 {
			a, b := make([]uint8, n), make([]uint8, n)
			for i := range a {
				a[i], b[i] = uint8(rng.IntN(q+2)), uint8(rng.IntN(q+2))
			}
			want := bytes.Clone(a)
			maxBytesWords(want, b)
			maxBytes(a, b)
			if !bytes.Equal(a, want) {
				t.Fatalf("n %d: SIMD max differs from the words'", n)
			}
			if !validRegisters(b) {
				t.Fatalf("n %d: valid registers refused", n)
			}
		}
	}
	for _, regs := range [][]uint8{make([]uint8, 3*128+7), make([]uint8, 128+31)} {
		simdPositions(t, regs)
	}
	// Of different lengths, the shorter bounds the merge.
	a, b := make([]uint8, 300), bytes.Repeat([]uint8{7}, 200)
	maxBytes(a, b)
	if !bytes.Equal(a[:200], b) || !bytes.Equal(a[200:], make([]uint8, 100)) {
		t.Fatal("merge of a longer destination")
	}
	a, b = bytes.Repeat([]uint8{7}, 200), make([]uint8, 300)
	maxBytes(a, b)
	if !bytes.Equal(a, bytes.Repeat([]uint8{7}, 200)) {
		t.Fatal("merge of a longer source")
	}
}

func simdPositions(t *testing.T, regs []uint8) {
	t.Helper()
	for pos := range regs {
		for _, v := range []int{q + 2, 100, 127, 128, 200, 255} {
			clear(regs)
			regs[pos] = uint8(v)
			if validRegisters(regs) {
				t.Fatalf("register %d at %d of %d accepted", v, pos, len(regs))
			}
			regs[pos] = q + 1
			if !validRegisters(regs) {
				t.Fatalf("register %d at %d refused", q+1, pos)
			}
		}
	}
}

// The small-count figures the docs state, over 2,000 random sets of each
// size (the names fix the hashes, so the figures are fixed too).
func TestSmallCounts(t *testing.T) {
	for _, c := range []struct {
		n, within int
		atLeast   float64 // share of sets estimated within that many users
	}{{50, 0, 0.93}, {100, 0, 0.735}, {200, 2, 0.965}, {300, 2, 0.87}} {
		ok := 0
		const sets = 2000
		for tr := range sets {
			var s Sketch
			for i := range c.n {
				s.Add(fmt.Sprintf("t%d-u%d", tr, i))
			}
			if d := int(s.Estimate()) - c.n; d >= -c.within && d <= c.within {
				ok++
			}
		}
		if share := float64(ok) / sets; share < c.atLeast {
			t.Errorf("%d users: %.1f%% of sets within %d, the docs say at least %.1f%%", c.n, 100*share, c.within, 100*c.atLeast)
		}
	}
}
