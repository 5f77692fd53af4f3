package tenant

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"hash/crc32"
	"strings"
)

// API key format: "vtk_" + key id (13 chars) + "_" + secret (52 chars) + checksum (7 chars).
//
// The key id makes lookup O(1): the edge finds the stored record by id and
// compares SHA-256(secret) in constant time. The secret has 256 bits of
// entropy, so a fast hash is the right tool (PBKDF2 protects low-entropy
// passwords and only burns CPU here). The CRC32 checksum lets secret scanners
// tell a real key from random text without asking us.
const (
	KeyPrefix    = "vtk_"
	keyIDLen     = 13
	keySecretLen = 52
	keyCRCLen    = 7
	keyLen       = len(KeyPrefix) + keyIDLen + 1 + keySecretLen + keyCRCLen
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func randB32(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never happens on supported platforms
	}
	return strings.ToLower(b32.EncodeToString(b))
}

func checksum(s string) string {
	var c [4]byte
	v := crc32.ChecksumIEEE([]byte(s))
	c[0], c[1], c[2], c[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return strings.ToLower(b32.EncodeToString(c[:]))
}

// GenerateKey returns a new key id, the plain key to show once, and the hash to store.
func GenerateKey() (id, plain string, hash []byte) {
	id = randB32(8)       // 13 chars
	secret := randB32(32) // 52 chars
	body := KeyPrefix + id + "_" + secret
	plain = body + checksum(body)
	return id, plain, HashSecret(secret)
}

// ParseKey splits a presented key into its id and secret. ok is false for
// anything that is not a well-formed key, so junk never reaches storage.
func ParseKey(key string) (id, secret string, ok bool) {
	if len(key) != keyLen || !strings.HasPrefix(key, KeyPrefix) {
		return "", "", false
	}
	body, sum := key[:keyLen-keyCRCLen], key[keyLen-keyCRCLen:]
	if body[len(KeyPrefix)+keyIDLen] != '_' || subtle.ConstantTimeCompare([]byte(checksum(body)), []byte(sum)) != 1 {
		return "", "", false
	}
	id = body[len(KeyPrefix) : len(KeyPrefix)+keyIDLen]
	secret = body[len(KeyPrefix)+keyIDLen+1:]
	if !ValidKeyID(id) {
		return "", "", false
	}
	return id, secret, true
}

// ValidKeyID reports whether s has the shape of a key id.
func ValidKeyID(s string) bool {
	if len(s) != keyIDLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// HashSecret is the stored form of a key secret.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// SecretMatches compares a presented secret with a stored hash in constant time.
func SecretMatches(secret string, hash []byte) bool {
	h := HashSecret(secret)
	return subtle.ConstantTimeCompare(h, hash) == 1
}

// NewSigningSecret returns a 256-bit HMAC key for signed requests.
func NewSigningSecret() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return b
}
