package natsx

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/micro"
)

// Replies travel to the caller's _INBOX, and every connection of a role
// (all edges share one) may subscribe to _INBOX.>: a leaked edge credential
// could read what the registry answers another edge. So answers that hold
// secrets or admin data are sealed (AES-256-GCM) under a key derived from a
// secret the caller sent in the request, which only the service's role can
// read: the admin token for admin operations, the key's own secret for
// auth.key. Call opens them with the key its context carries.

// HeaderSealed marks a sealed answer.
const HeaderSealed = "Trk-Sealed"

// Purposes of reply keys: one secret never yields the same key twice.
const (
	PurposeAdmin   = "admin"
	PurposeAuthKey = "auth.key"
	PurposeAPIKey  = "api-key" // answers to a request forwarding a partner's key
)

// ReplyKey derives the key sealing answers for a purpose from a secret.
func ReplyKey(purpose, secret string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "trk reply "+purpose, 32)
	if err != nil {
		panic("natsx: hkdf: " + err.Error()) // only for an invalid length
	}
	return k
}

type replyKeyKey struct{}

// WithReplyKey returns a context whose Calls open sealed answers with key.
// WithAdminToken and WithAPIKey set theirs themselves.
func WithReplyKey(ctx context.Context, key []byte) context.Context {
	return context.WithValue(ctx, replyKeyKey{}, key)
}

func replyKey(ctx context.Context) []byte {
	if k, ok := ctx.Value(replyKeyKey{}).([]byte); ok {
		return k
	}
	if tok, _ := ctx.Value(adminTokenKey{}).(string); tok != "" {
		return ReplyKey(PurposeAdmin, tok)
	}
	if key, _ := ctx.Value(apiKeyKey{}).(string); key != "" {
		return ReplyKey(PurposeAPIKey, key)
	}
	return nil
}

func seal(key, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plain)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, nil), nil
}

// openSealed opens a sealed answer with the key of ctx.
func openSealed(ctx context.Context, data []byte) ([]byte, error) {
	key := replyKey(ctx)
	if key == nil {
		return nil, errors.New("natsx: a sealed answer, and no key to open it")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(data) < gcm.NonceSize() {
		return nil, errors.New("natsx: sealed answer too short")
	}
	return gcm.Open(nil, data[:gcm.NonceSize()], data[gcm.NonceSize():], nil)
}

// SealReplies seals the successful answers of next under keyOf(req) (nil:
// answered as they are). Errors are not sealed: they hold no secret.
func SealReplies(keyOf func(micro.Request) []byte, next micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		if key := keyOf(req); key != nil {
			req = sealing{Request: req, key: key}
		}
		next.Handle(req)
	})
}

// sealing is a request whose answers are sealed.
type sealing struct {
	micro.Request
	key []byte
}

func (s sealing) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.Respond(data, opts...)
}

func (s sealing) Respond(data []byte, opts ...micro.RespondOpt) error {
	sealed, err := seal(s.key, data)
	if err != nil {
		return err
	}
	return s.Request.Respond(sealed, append(opts, micro.WithHeaders(micro.Headers{HeaderSealed: {"aes-gcm"}}))...)
}

// AdminReplyKey seals the answers of an admin operation under the admin
// token its request forwards (for SealReplies).
func AdminReplyKey(req micro.Request) []byte {
	return ReplyKey(PurposeAdmin, req.Headers().Get(HeaderAdminToken))
}

// CallerReplyKey seals the answers of an operation under the credential its
// request forwards (for SealReplies): the admin token, else the partner's
// API key, as the caller's Call opens them; nil (not sealed) without either.
func CallerReplyKey(req micro.Request) []byte {
	h := req.Headers()
	if tok := h.Get(HeaderAdminToken); tok != "" {
		return ReplyKey(PurposeAdmin, tok)
	}
	if key := h.Get(HeaderAPIKey); key != "" {
		return ReplyKey(PurposeAPIKey, key)
	}
	return nil
}
