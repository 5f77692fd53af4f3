package cassandrastore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/volcanion/tracking/shared/storage"
)

// Counts by name (a row's groups, its through) are stored as blobs: key
// length, key, value, as uvarints, keys sorted, so equal maps encode to
// equal bytes (through is compared by IF through = ?). A blob decodes
// without the driver's reflection, which a read of 720 rows with dozens of
// groups each spent most of its time in.

func encodeCounts(m map[string]int64) []byte {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	size := 0
	for k := range m {
		keys = append(keys, k)
		size += len(k) + 12
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(m[k]))
	}
	return b
}

var errBadCounts = errors.New("cassandrastore: bad counts blob")

// usersMark starts the through of every users row this release writes,
// which also writes the row's n, its sketch's estimate (UserEstimates reads
// n alone: checking it against the sketch's write time costs as much as
// reading the sketch). To a release before, the mark is a key 2^28 bytes
// long, so its fold refuses the row (bad counts blob) instead of rewriting
// the sketch and leaving n stale; reports never read a users row's
// through. This release reads blobs with and without it.
var usersMark = []byte{0xff, 0xff, 0xff, 0x7f}

// encodeThrough is a row's through: its users rows' marked.
func encodeThrough(kind int8, m map[string]int64) []byte {
	b := encodeCounts(m)
	if kind == kindUsers && b != nil {
		b = append(append(make([]byte, 0, len(usersMark)+len(b)), usersMark...), b...)
	}
	return b
}

// decodeCounts calls fn with each name and count of b.
func decodeCounts(b []byte, fn func(k string, v int64)) error {
	return decodeCountBytes(b, func(k []byte, v int64) { fn(string(k), v) })
}

// decodeCountBytes is decodeCounts with each name as bytes of b, so a
// reader that wants one name allocates nothing for the others (a one-type
// report reads hundreds of rows of 50 names).
func decodeCountBytes(b []byte, fn func(k []byte, v int64)) error {
	b = bytes.TrimPrefix(b, usersMark)
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return errBadCounts
		}
		k := b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return errBadCounts
		}
		b = b[n:]
		fn(k, int64(v))
	}
	return nil
}

// addCounts adds the counts of b into m, or only the one of name when it
// is set (then without allocating). Adding every name still allocates each
// (Go's map assignment by string(bytes) does), as decodeCounts did.
func addCounts(m map[string]int64, b []byte, name string) error {
	return decodeCountBytes(b, func(k []byte, v int64) {
		switch {
		case name != "":
			if string(k) == name {
				m[name] += v
			}
		default:
			m[string(k)] += v
		}
	})
}

// namedGroups is how many names other than storage.OtherGroup b holds;
// 0 for a blob too short to hold storage.MaxGroups (an entry is 3 bytes at
// least), which is not scanned.
func namedGroups(b []byte) int {
	if len(b) < 3*storage.MaxGroups {
		return 0
	}
	n := 0
	_ = decodeCountBytes(b, func(k []byte, _ int64) {
		if string(k) != storage.OtherGroup {
			n++
		}
	})
	return n
}

// countOf is one name's count in b (0 when absent), without decoding the rest
// into a map.
func countOf(b []byte, key string) (int64, error) {
	var out int64
	err := decodeCounts(b, func(k string, v int64) {
		if k == key {
			out = v
		}
	})
	return out, err
}

func decodeMap(b []byte) (map[string]int64, error) {
	m := make(map[string]int64, len(b)/16+1)
	err := decodeCounts(b, func(k string, v int64) { m[k] = v })
	return m, err
}
