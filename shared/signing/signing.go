// Package signing is request signing for replay protection. A client signs
//
//	METHOD \n PATH \n X-Timestamp \n X-Nonce \n hex(SHA-256(body))
//
// where PATH is the request's path, followed by "?" and the query string
// exactly as sent when there is one (see Target), so a query cannot be
// changed either.
// with HMAC-SHA256 under its key's signing secret and sends the hex digest
// as X-Signature, with X-Timestamp (Unix seconds) and X-Nonce (16-128 of
// A-Z a-z 0-9 - _). The server accepts a timestamp within a window, checks
// the signature in constant time, and remembers each nonce for the window.
package signing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderTimestamp = "X-Timestamp"
	HeaderNonce     = "X-Nonce"
	HeaderSignature = "X-Signature"
)

// Canonical is the string that is signed.
func Canonical(method, path, timestamp, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte(strings.ToUpper(method) + "\n" + path + "\n" + timestamp + "\n" + nonce + "\n" + hex.EncodeToString(sum[:]))
}

// Sign returns the hex HMAC-SHA256 of the canonical string.
func Sign(secret []byte, method, path, timestamp, nonce string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(Canonical(method, path, timestamp, nonce, body))
	return hex.EncodeToString(m.Sum(nil))
}

// Valid reports whether signature is right, comparing in constant time.
func Valid(secret []byte, method, path, timestamp, nonce string, body []byte, signature string) bool {
	got, err := hex.DecodeString(signature)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	want, _ := hex.DecodeString(Sign(secret, method, path, timestamp, nonce, body))
	return hmac.Equal(got, want)
}

// ValidNonce reports whether a nonce has an acceptable form.
func ValidNonce(n string) bool {
	if len(n) < 16 || len(n) > 128 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ParseTimestamp reads X-Timestamp (Unix seconds).
func ParseTimestamp(v string) (time.Time, bool) {
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec <= 0 || sec > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// Target is the PATH a request signs: its path, and "?" with the raw
// query when it has one.
func Target(u *url.URL) string {
	if u.RawQuery == "" {
		return u.Path
	}
	return u.Path + "?" + u.RawQuery
}

// SignRequest sets the three headers on req for body, signed at now. It is
// the client helper: sign after the body and path are final.
func SignRequest(req *http.Request, body []byte, secret []byte, now time.Time) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, Sign(secret, req.Method, Target(req.URL), ts, nonce, body))
}
