package tenant

import (
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id, plain, hash := GenerateKey()
		if !strings.HasPrefix(plain, KeyPrefix+id+"_") || len(plain) != keyLen || seen[id] {
			t.Fatalf("bad key %q (id %q)", plain, id)
		}
		seen[id] = true
		gid, secret, ok := ParseKey(plain)
		if !ok || gid != id || !SecretMatches(secret, hash) || !ValidKeyID(id) {
			t.Fatalf("round trip failed for %q", plain)
		}
		if strings.Contains(string(hash), secret) {
			t.Fatal("hash contains the secret")
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	_, plain, _ := GenerateKey()
	flip := func(i int) string {
		b := []byte(plain)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, k := range map[string]string{
		"empty": "", "short": plain[:len(plain)-1], "long": plain + "a", "prefix": "xtk_" + plain[4:],
		"secret changed": flip(30), "id changed": flip(6), "checksum changed": flip(len(plain) - 1),
		"separator": plain[:17] + "-" + plain[18:],
	} {
		if _, _, ok := ParseKey(k); ok {
			t.Errorf("%s: %q parsed", name, k)
		}
	}
	_, secret, _ := ParseKey(plain)
	_, _, otherHash := GenerateKey()
	if SecretMatches(secret, otherHash) {
		t.Fatal("secret matched another key's hash")
	}
}

func FuzzParseKey(f *testing.F) {
	_, plain, _ := GenerateKey()
	f.Add(plain)
	f.Add("vtk_")
	f.Add(strings.Repeat("a", keyLen))
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := ParseKey(s)
		if ok && (!ValidKeyID(id) || len(secret) != keySecretLen || !strings.HasPrefix(s, KeyPrefix)) {
			t.Fatalf("accepted malformed key %q", s)
		}
	})
}

func TestValidCode(t *testing.T) {
	for code, want := range map[string]bool{"acme": true, "ACME_1.web-2": true, "a": true, "": false, "-x": false,
		"has space": false, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, "ü": false} {
		if ValidCode(code) != want {
			t.Errorf("ValidCode(%q) = %v", code, !want)
		}
	}
}
