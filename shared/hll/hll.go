// Package hll counts distinct users in bounded memory: a HyperLogLog sketch
// with 2^14 registers (8 KiB encoded when dense, far less while sparse) and Ertl's
// improved estimator (arXiv:1702.01284), which needs no bias tables and is
// unbiased from one user to billions.
//
// The relative standard error is 1.04/sqrt(2^14) = 0.81%: about two
// estimates in three are within 0.81% of the truth, 99.7% within 2.4%.
// Small counts come out near exact: in 2,000 random sets each, the estimate
// was exact for 93% of sets of 50 users and 74% of 100, and within two users
// for 97% of 200 and 87% of 300.
//
// Merging is a register-wise max: commutative, associative and idempotent,
// so a sketch merged twice (a redelivered batch, a fold that ran twice)
// counts nothing twice.
package hll

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"slices"
)

const (
	P = 14     // index bits
	M = 1 << P // registers
	q = 64 - P // bits left for the rank; a register holds 0..q+1

	// A sparse sketch keeps one entry (3 bytes) per non-zero register; it
	// turns dense when that is no longer a saving worth having.
	maxSparse = M / 4

	tagSparse = 1
	tagDense  = 2 // one byte a register
	tagNibble = 3 // two registers a byte, above a base (see appendNibbles)

	// nibbleMaxBase is the largest base of a nibble encoding: base+15 is
	// still a register's value.
	nibbleMaxBase = q + 1 - 15
)

// StdError is the sketch's relative standard error.
var StdError = 1.04 / math.Sqrt(M)

// Sketch is a HyperLogLog sketch. The zero value is an empty sketch.
//
// While sparse it keeps its non-zero registers as a sorted list of
// index<<8|value, plus a short unsorted list of recent additions merged in
// on demand: merging two sparse sketches is then a linear merge of sorted
// lists, with no map.
type Sketch struct {
	dense  []uint8  // M registers, or nil while sparse
	sparse []uint32 // sorted by index, one entry per index
	tmp    []uint32 // added since the last compaction, unsorted
}

// Hash is the stable 64-bit hash of a user id: FNV-1a, then a finaliser
// (MurmurHash3's fmix64) so every bit is mixed. Stable across processes and
// releases: stored sketches depend on it.
func Hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Add counts a user.
func (s *Sketch) Add(user string) { s.AddHash(Hash(user)) }

// AddHash counts a user by its Hash.
func (s *Sketch) AddHash(h uint64) {
	idx := uint32(h >> q)
	rank := uint8(bits.LeadingZeros64(h<<P|1<<(P-1)) + 1) // 1..q+1
	if s.dense != nil {
		if rank > s.dense[idx] {
			s.dense[idx] = rank
		}
		return
	}
	s.tmp = append(s.tmp, idx<<8|uint32(rank))
	if len(s.tmp) >= 1024 {
		s.compact()
	}
}

// compact merges tmp into sparse, and turns the sketch dense when sparse
// grows past maxSparse.
func (s *Sketch) compact() {
	if len(s.tmp) == 0 {
		return
	}
	slices.Sort(s.tmp)
	s.sparse = mergeSorted(s.sparse, s.tmp)
	s.tmp = s.tmp[:0]
	if len(s.sparse) > maxSparse {
		s.toDense()
	}
}

// mergeSorted merges two lists of index<<8|value sorted by index (a list
// may hold one index more than once, as tmp does), keeping the largest
// value of each index.
func mergeSorted(a, b []uint32) []uint32 {
	out := make([]uint32, 0, len(a)+len(b))
	push := func(e uint32) {
		if n := len(out); n > 0 && out[n-1]>>8 == e>>8 {
			if e&0xff > out[n-1]&0xff {
				out[n-1] = e
			}
			return
		}
		out = append(out, e)
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] <= b[j] {
			push(a[i])
			i++
		} else {
			push(b[j])
			j++
		}
	}
	for ; i < len(a); i++ {
		push(a[i])
	}
	for ; j < len(b); j++ {
		push(b[j])
	}
	return out
}

func (s *Sketch) toDense() {
	s.dense = make([]uint8, M)
	for _, lists := range [][]uint32{s.sparse, s.tmp} {
		for _, e := range lists {
			if r := uint8(e); r > s.dense[e>>8] {
				s.dense[e>>8] = r
			}
		}
	}
	s.sparse, s.tmp = nil, nil
}

// Empty reports whether nothing was added.
func (s *Sketch) Empty() bool { return s.dense == nil && len(s.sparse) == 0 && len(s.tmp) == 0 }

// Merge adds every user of o.
func (s *Sketch) Merge(o *Sketch) {
	if o.dense != nil {
		if s.dense == nil {
			s.toDense()
		}
		maxBytes(s.dense, o.dense)
		return
	}
	o.compact()
	s.mergeSparse(o.sparse)
}

// entry reads the sparse entry at the head of e (len(e) >= 3): ok when its
// index is in range and above prev (entries are in index order, each once)
// and its value a register's.
func entry(e []byte, prev int) (idx int, r uint8, ok bool) {
	idx, r = int(e[0])<<8|int(e[1]), e[2]
	return idx, r, idx < M && idx > prev && r != 0 && r <= q+1
}

// mergeEncoded merges encoded sparse entries (index, 2 bytes, then value)
// straight from their bytes, checking them on the way: in range, in index
// order. On an error a sketch that was sparse holds the same registers;
// a dense one may hold the entries before the bad one.
func (s *Sketch) mergeEncoded(e []byte) error {
	if len(e)%3 != 0 {
		return ErrCorrupt
	}
	n := len(e) / 3
	if s.dense != nil {
		d, prev := s.dense[:M], -1
		for e := e[:3*n]; len(e) >= 3; e = e[3:] {
			idx, r, ok := entry(e, prev)
			if !ok {
				return ErrCorrupt
			}
			prev = idx
			if r > d[idx] {
				d[idx] = r
			}
		}
		return nil
	}
	s.compact()
	if s.dense != nil {
		// Turned dense by its own additions: check first, so a refused
		// merge still leaves its registers as they were.
		if Check(append([]byte{tagSparse}, e...)) != nil {
			return ErrCorrupt
		}
		return s.mergeEncoded(e)
	}
	// One pass over both sorted lists; s is unchanged on an error.
	a, i, prev := s.sparse, 0, -1
	out := make([]uint32, 0, len(a)+n)
	for e := e[:3*n]; len(e) >= 3; e = e[3:] {
		idx, r, ok := entry(e, prev)
		if !ok {
			return ErrCorrupt
		}
		prev = idx
		x := uint32(idx)<<8 | uint32(r)
		for i < len(a) && a[i]>>8 < uint32(idx) {
			out = append(out, a[i])
			i++
		}
		if i < len(a) && a[i]>>8 == uint32(idx) {
			x = max(x, a[i]) // same index: the larger register
			i++
		}
		out = append(out, x)
	}
	s.sparse = append(out, a[i:]...)
	if len(s.sparse) > maxSparse {
		s.toDense()
	}
	return nil
}

// Check reports ErrCorrupt for bytes that encode no sketch, as
// MergeBinary would, without merging them anywhere.
func Check(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case tagDense:
		if len(b)-1 != M || !validRegisters(b[1:]) {
			return ErrCorrupt
		}
		return nil
	case tagSparse:
		e := b[1:]
		if len(e)%3 != 0 {
			return ErrCorrupt
		}
		for prev := -1; len(e) >= 3; e = e[3:] {
			idx, _, ok := entry(e, prev)
			if !ok {
				return ErrCorrupt
			}
			prev = idx
		}
		return nil
	case tagNibble:
		if _, ok := checkNibbles(b); !ok {
			return ErrCorrupt
		}
		return nil
	}
	return ErrCorrupt
}

// IsDense reports whether b encodes a dense sketch (all M registers, one
// a byte or two a byte).
func IsDense(b []byte) bool { return len(b) > 0 && (b[0] == tagDense || b[0] == tagNibble) }

// Union estimates the union of encoded sketches without building it:
// MergeBinary each, then Flush. The registers a sparse sketch sets are
// noted in place, so a union of k sparse sketches costs their entries,
// where merging them one by one into a sparse sketch walks the growing
// list k times. Its estimate is the merged sketch's (TestUnion). The zero
// value is empty; one Union serves any number of unions in turn.
type Union struct {
	regs    [M]uint8
	touched []uint16 // registers set, while no dense sketch was merged
	dense   bool     // a dense sketch was merged: every register may be set
}

// MergeBinary adds the sketch b encodes. Bytes that encode no sketch give
// ErrCorrupt; u may then hold some of their entries (each one checked
// before it is taken, so u stays a valid union, of part of b).
func (u *Union) MergeBinary(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case tagDense:
		if len(b)-1 != M || !validRegisters(b[1:]) {
			return ErrCorrupt
		}
		maxBytes(u.regs[:], b[1:])
		u.dense = true
	case tagNibble:
		n, ok := checkNibbles(b)
		if !ok {
			return ErrCorrupt
		}
		n.mergeInto(u.regs[:])
		u.dense = true
	case tagSparse:
		e := b[1:]
		if len(e)%3 != 0 {
			return ErrCorrupt
		}
		prev := -1
		for ; len(e) >= 3; e = e[3:] {
			idx, r, ok := entry(e, prev)
			if !ok {
				return ErrCorrupt
			}
			prev = idx
			if old := u.regs[idx]; r > old {
				if old == 0 && !u.dense {
					u.touched = append(u.touched, uint16(idx))
				}
				u.regs[idx] = r
			}
		}
	default:
		return ErrCorrupt
	}
	return nil
}

// Flush returns the union's estimate, merges the union into into (when
// not nil), and empties u.
func (u *Union) Flush(into *Sketch) uint64 {
	var c [q + 2]int
	if u.dense {
		for _, r := range u.regs {
			c[r]++
		}
		if into != nil {
			if into.dense == nil {
				into.toDense()
			}
			maxBytes(into.dense, u.regs[:])
		}
		clear(u.regs[:])
	} else {
		c[0] = M - len(u.touched)
		if into != nil && into.dense == nil && len(u.touched) > 0 {
			into.toDense() // many unions merge into one: dense at once
		}
		for _, i := range u.touched {
			r := u.regs[i]
			c[r]++
			if into != nil && r > into.dense[i] {
				into.dense[i] = r
			}
			u.regs[i] = 0
		}
	}
	u.touched, u.dense = u.touched[:0], false
	return estimate(&c)
}

// Dense is an empty sketch that starts dense: the accumulator of many
// merges, which then cost no allocation.
func Dense() *Sketch { return &Sketch{dense: make([]uint8, M)} }

// mergeSparse merges a sorted sparse list.
func (s *Sketch) mergeSparse(list []uint32) {
	if s.dense != nil {
		for _, e := range list {
			if r := uint8(e); r > s.dense[e>>8] {
				s.dense[e>>8] = r
			}
		}
		return
	}
	s.compact()
	s.sparse = mergeSorted(s.sparse, list)
	if len(s.sparse) > maxSparse {
		s.toDense()
	}
}

// maxBytes sets dst[i] = max(dst[i], src[i]) for valid registers, with
// AVX2 where the CPU has it (maxSIMD, 128 registers a step), the rest in
// words.
func maxBytes(dst, src []uint8) {
	n := 0
	if useSIMD {
		if n = min(len(dst), len(src)) &^ 127; n > 0 {
			maxSIMD(&dst[0], &src[0], n)
		}
	}
	maxBytesWords(dst[n:], src[n:])
}

// validRegisters reports whether every register is at most q+1 (51). A
// merge checks its source first, so a sketch never takes an invalid
// register.
func validRegisters(regs []uint8) bool {
	n := 0
	if useSIMD {
		if n = len(regs) &^ 127; n > 0 && maxRegSIMD(&regs[0], n) > q+1 {
			return false
		}
	}
	return validRegistersWords(regs[n:])
}

// maxBytesWords is maxBytes in words: for valid registers (below 128, so
// (a|0x80) - b never borrows across bytes, and its top bit says a >= b),
// 32 registers a step, in four independent words.
func maxBytesWords(dst, src []uint8) {
	le := binary.LittleEndian
	n := min(len(dst), len(src)) &^ 31
	for i := 0; i < n; i += 32 {
		d, s := dst[i:i+32:i+32], src[i:i+32:i+32]
		le.PutUint64(d[0:], max8(le.Uint64(d[0:]), le.Uint64(s[0:])))
		le.PutUint64(d[8:], max8(le.Uint64(d[8:]), le.Uint64(s[8:])))
		le.PutUint64(d[16:], max8(le.Uint64(d[16:]), le.Uint64(s[16:])))
		le.PutUint64(d[24:], max8(le.Uint64(d[24:]), le.Uint64(s[24:])))
	}
	for i := n; i < min(len(dst), len(src)); i++ {
		dst[i] = max(dst[i], src[i])
	}
}

// max8 is the byte-wise max of two words of valid registers.
func max8(a, b uint64) uint64 {
	const hi = 0x8080808080808080
	mask := ((((a | hi) - b) & hi) >> 7) * 0xff // 0xff where a >= b
	return a&mask | b&^mask
}

// min8 is the byte-wise min of two words of valid registers.
func min8(a, b uint64) uint64 {
	const hi = 0x8080808080808080
	mask := ((((a | hi) - b) & hi) >> 7) * 0xff // 0xff where a >= b
	return b&mask | a&^mask
}

// validRegistersWords is validRegisters in words, 32 at a time: v +
// (128-52) reaches the top bit iff v >= 52, without a carry across bytes
// for v < 128.
func validRegistersWords(regs []uint8) bool {
	const hi, add = 0x8080808080808080, 0x4c4c4c4c4c4c4c4c
	le := binary.LittleEndian
	var bad uint64
	n := len(regs) &^ 31
	for i := 0; i < n; i += 32 {
		r := regs[i : i+32 : i+32]
		w0, w1, w2, w3 := le.Uint64(r[0:]), le.Uint64(r[8:]), le.Uint64(r[16:]), le.Uint64(r[24:])
		bad |= w0 | (w0 + add) | w1 | (w1 + add) | w2 | (w2 + add) | w3 | (w3 + add)
	}
	for _, r := range regs[n:] {
		if r > q+1 {
			return false
		}
	}
	return bad&hi == 0
}

// Estimate is the number of distinct users added, estimated.
func (s *Sketch) Estimate() uint64 {
	var c [q + 2]int // c[k]: registers holding k
	if s.dense != nil {
		for _, r := range s.dense {
			c[r]++
		}
	} else {
		s.compact()
		c[0] = M - len(s.sparse)
		for _, e := range s.sparse {
			c[uint8(e)]++
		}
	}
	return estimate(&c)
}

// estimate is Ertl's estimate from c[k], the registers holding k.
func estimate(c *[q + 2]int) uint64 {
	m := float64(M)
	z := m * tau(1-float64(c[q+1])/m)
	for k := q; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * sigma(float64(c[0])/m)
	return uint64(math.Round(m * m / (2 * math.Ln2) / z))
}

func sigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

func tau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}

// MarshalBinary encodes the sketch in the smallest of three forms, chosen
// from its registers alone (so equal sketches encode to equal bytes): a tag
// byte, then either
//   - sparse: each non-zero register's index (2 bytes, big-endian) and
//     value, in index order;
//   - nibble: a base, then two registers a byte above it (appendNibbles);
//   - dense: the M registers, a byte each.
//
// A sketch of thousands of users is dense: nibbles halve what storage keeps
// and reads for it, which is most of what a report over many hours costs.
func (s *Sketch) MarshalBinary() ([]byte, error) { return s.Append(nil), nil }

// Append appends the encoding to b.
func (s *Sketch) Append(b []byte) []byte {
	if s.dense == nil {
		s.compact()
	}
	if s.dense == nil {
		// Zero registers remain: base 0, and values over 15 are exceptions.
		exc := 0
		for _, e := range s.sparse {
			if uint8(e) > 15 {
				exc++
			}
		}
		if 3*len(s.sparse) <= nibbleSize(exc)-1 {
			b = append(b, tagSparse)
			for _, e := range s.sparse {
				b = binary.BigEndian.AppendUint16(b, uint16(e>>8))
				b = append(b, uint8(e))
			}
			return b
		}
		regs := make([]uint8, M)
		for _, e := range s.sparse {
			regs[e>>8] = uint8(e)
		}
		return appendRegisters(b, regs)
	}
	return appendRegisters(b, s.dense)
}

// nibbleSize is the length of a nibble encoding with exc exceptions.
func nibbleSize(exc int) int { return 2 + M/2 + 2 + 3*exc }

// appendRegisters encodes M registers in the smallest form. It counts them
// in words, eight registers a step (a fold encodes every dense slot it
// writes).
func appendRegisters(b []byte, regs []uint8) []byte {
	const ones, hi = 0x0101010101010101, 0x8080808080808080
	le := binary.LittleEndian
	regs = regs[:M:M]
	nz, lo := 0, uint64(q+1)*ones
	for i := 0; i < M; i += 8 {
		w := le.Uint64(regs[i:])
		nz += bits.OnesCount64(((w | hi) - ones) & hi) // registers of 1 or more
		lo = min8(lo, w)
	}
	base := uint8(nibbleMaxBase)
	for k := range 8 {
		base = min(base, uint8(lo>>(8*k)))
	}
	exc, over := 0, uint64(base+16)*ones
	for i := 0; i < M; i += 8 {
		exc += bits.OnesCount64(((le.Uint64(regs[i:]) | hi) - over) & hi) // over base+15
	}
	sparse, nibble := 1+3*nz, nibbleSize(exc)
	switch {
	case sparse <= nibble && sparse <= 1+M:
		b = append(b, tagSparse)
		for i, r := range regs {
			if r != 0 {
				b = append(b, uint8(i>>8), uint8(i), r)
			}
		}
		return b
	case nibble <= 1+M:
		return appendNibbles(b, regs, base, exc)
	}
	b = append(b, tagDense)
	return append(b, regs...)
}

// appendNibbles encodes registers as a base, then M/2 bytes: byte i holds
// register i-base in its low nibble and register i+M/2-base in its high
// one (so a word of bytes unpacks into two words of registers), 15 standing
// for 15 or more; then the registers above base+15 (exceptions): their
// count (2 bytes) and each one's index (2 bytes) and value, in index order.
// Every register is at least base.
func appendNibbles(b []byte, regs []uint8, base uint8, exc int) []byte {
	const h, ones, hi = M / 2, 0x0101010101010101, 0x8080808080808080
	le := binary.LittleEndian
	b = append(b, tagNibble, base)
	b = slices.Grow(b, nibbleSize(exc)-2)
	sub := uint64(base) * ones
	// nib is each register less base, at most 15.
	nib := func(w uint64) uint64 {
		v := w - sub                                     // no borrow: every register is at least base
		sat := ((((v | hi) - 16*ones) & hi) >> 7) * 0xff // 0xff where v >= 16
		return v&^sat | 0x0f*ones&sat
	}
	n := len(b)
	b = b[:n+h]
	for i := 0; i < h; i += 8 {
		le.PutUint64(b[n+i:], nib(le.Uint64(regs[i:]))|nib(le.Uint64(regs[h+i:]))<<4)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(exc))
	over := uint64(base+16) * ones
	for i := 0; exc > 0 && i < M; i += 8 {
		if ((le.Uint64(regs[i:])|hi)-over)&hi == 0 {
			continue // no register over base+15 in these eight
		}
		for j, r := range regs[i : i+8] {
			if r-base > 15 {
				b = append(b, uint8((i+j)>>8), uint8(i+j), r)
			}
		}
	}
	return b
}

// nibbles is a checked nibble encoding.
type nibbles struct {
	base   uint8
	packed []byte // M/2
	exc    []byte // 3 bytes each
}

// checkNibbles checks a nibble encoding (tag included): its length, its
// base, and each exception in index order, in range, marked 15 in the
// packed registers and above base+15.
func checkNibbles(b []byte) (nibbles, bool) {
	const h = M / 2
	if len(b) < nibbleSize(0) || b[1] > nibbleMaxBase {
		return nibbles{}, false
	}
	n := nibbles{base: b[1], packed: b[2 : 2+h]}
	k := int(binary.BigEndian.Uint16(b[2+h:]))
	if len(b) != nibbleSize(k) {
		return nibbles{}, false
	}
	n.exc = b[nibbleSize(0):]
	for e, prev := n.exc, -1; len(e) >= 3; e = e[3:] {
		idx, r, ok := entry(e, prev)
		if !ok || r <= n.base+15 || n.nibble(idx) != 15 {
			return nibbles{}, false
		}
		prev = idx
	}
	return n, true
}

func (n nibbles) nibble(i int) uint8 {
	if i < M/2 {
		return n.packed[i] & 15
	}
	return n.packed[i-M/2] >> 4
}

// mergeInto sets dst[i] = max(dst[i], register i) for the M registers of
// dst, eight packed bytes (sixteen registers) a step.
func (n nibbles) mergeInto(dst []uint8) {
	const h, lo4 = M / 2, 0x0f0f0f0f0f0f0f0f
	le := binary.LittleEndian
	add := uint64(n.base) * 0x0101010101010101
	d0, d1, p := dst[:h:h], dst[h:M:M], n.packed[:h:h]
	for i := 0; i < h; i += 8 {
		w := le.Uint64(p[i:])
		le.PutUint64(d0[i:], max8(le.Uint64(d0[i:]), w&lo4+add))
		le.PutUint64(d1[i:], max8(le.Uint64(d1[i:]), w>>4&lo4+add))
	}
	for e := n.exc; len(e) >= 3; e = e[3:] {
		idx := int(e[0])<<8 | int(e[1])
		dst[idx] = max(dst[idx], e[2])
	}
}

// ErrCorrupt: bytes that no sketch encodes to.
var ErrCorrupt = errors.New("hll: not a sketch")

// UnmarshalBinary replaces s by the sketch b encodes. An empty b is an
// empty sketch.
func (s *Sketch) UnmarshalBinary(b []byte) error {
	*s = Sketch{}
	return s.MergeBinary(b)
}

// MergeBinary merges the sketch b encodes into s, without decoding it
// into a sketch of its own first. Bytes that encode no sketch give
// ErrCorrupt; a dense s may then hold some of their sparse entries (each
// checked before it is taken: s stays a valid sketch, never holding an
// invalid register), any other s is unchanged. Every caller fails its read
// or write on the error.
func (s *Sketch) MergeBinary(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case tagDense:
		regs := b[1:]
		if len(regs) != M || !validRegisters(regs) {
			return ErrCorrupt
		}
		if s.dense == nil {
			s.toDense()
		}
		maxBytes(s.dense, regs)
	case tagNibble:
		n, ok := checkNibbles(b)
		if !ok {
			return ErrCorrupt
		}
		if s.dense == nil {
			s.toDense()
		}
		n.mergeInto(s.dense)
	case tagSparse:
		return s.mergeEncoded(b[1:])
	default:
		return ErrCorrupt
	}
	return nil
}
