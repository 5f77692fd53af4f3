package storage_test

import (
	"strings"
	"testing"

	"github.com/volcanion/tracking/shared/storage"
)

// TypedKey is one path segment after the id, and no two types share it:
// types holding "/" and "%" (and what escaping them would give) included.
func TestTypedKeyKeepsTypesApart(t *testing.T) {
	const id = "01900000-0000-7000-8000-000000001000"
	seen := map[string]string{}
	for _, typ := range []string{"", "a", "a/2", "a%2F2", "a%252F2", "%", "/", "%2F", "a b", "x/y/z", "👀/"} {
		k := storage.TypedKey(id, typ)
		rest, ok := strings.CutPrefix(k, id+"/")
		if !ok || strings.Contains(rest, "/") {
			t.Fatalf("TypedKey(%q) = %q: not the id and one segment", typ, k)
		}
		if gotID, gotType, ok := storage.SplitTypedKey(k); !ok || gotID != id || gotType != typ {
			t.Fatalf("SplitTypedKey(%q) = %q, %q, %v; want %q, %q", k, gotID, gotType, ok, id, typ)
		}
		if other, dup := seen[k]; dup {
			t.Fatalf("types %q and %q share the key %q", other, typ, k)
		}
		seen[k] = typ
	}
}

// A key TypedKey does not make does not split.
func TestSplitTypedKeyRefusesOthers(t *testing.T) {
	for _, k := range []string{"", "id", "id/a/b", "id/%2", "id/%zz", "id/%2f"} {
		if id, typ, ok := storage.SplitTypedKey(k); ok {
			t.Fatalf("SplitTypedKey(%q) = %q, %q, ok", k, id, typ)
		}
	}
}
