package cassandrastore

import (
	"bytes"
	"fmt"
	"testing"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
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

// A pack decodes as gocql decodes a map<int, bigint>, and a malformed one
// is an error, never entries made up or dropped.
func TestPackEntriesCodec(t *testing.T) {
	info := gocql.NewNativeType(4, gocql.TypeCustom, "map<int, bigint>")
	for _, m := range []map[int]int64{nil, {}, {0: 1}, {23: -5, 7: 1 << 50, 12: 0}, func() map[int]int64 {
		all := map[int]int64{}
		for h := range 24 {
			all[h] = int64(h) * 1000003
		}
		return all
	}()} {
		b, err := gocql.Marshal(info, m)
		if err != nil {
			t.Fatal(err)
		}
		var p packEntries
		p.has, p.n[3] = 1<<3, 9 // stale: a decode starts afresh
		if err := p.UnmarshalCQL(info, b); err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		got := map[int]int64{}
		for h := range p.n {
			if p.has&(1<<h) != 0 {
				got[h] = p.n[h]
			} else if p.n[h] != 0 {
				t.Fatalf("%v: hour %d absent but %d", m, h, p.n[h])
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(m) {
			t.Fatalf("decoded %v, want %v", got, m)
		}
	}
	good, err := gocql.Marshal(info, map[int]int64{5: 6})
	if err != nil {
		t.Fatal(err)
	}
	hour24, err := gocql.Marshal(info, map[int]int64{24: 6})
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte{}, good...), 0),
		"no count":     {0, 0},
		"hour 24":      hour24,
		"negative":     {0xff, 0xff, 0xff, 0xff},
		"a short key":  {0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 6},
		"size too big": {0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 5},
	} {
		var p packEntries
		if err := p.UnmarshalCQL(info, bad); err == nil {
			t.Errorf("%s: decoded %+v", name, p)
		}
	}
}
