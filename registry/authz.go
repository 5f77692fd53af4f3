package registry

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/tenant"
)

// serviceOps are the operations a service's own NATS role may call without
// an admin credential: what an edge needs to admit events (auth.*, and the
// sampled last use of a key), what workers need to tell whether an event's
// partner and sub-system exist, and health. None of them creates or changes a
// partner, sub-system or key, and none lists anything. auth.key answers a
// key's record (hash and signing secret: an edge verifies signed requests
// itself) only to a caller holding the key (authKeyProven).
//
// Answers that hold secrets or admin data are sealed (natsx.SealReplies):
// they travel to an _INBOX every connection of the edge role may read.
//
// Every other operation (every write, and the admin reads: lists, look-ups
// by code, key listings) needs the admin credential the caller gave the
// edge, forwarded in the natsx.HeaderAdminToken header and checked here
// against the registry's own tokens. So an edge's NATS credential alone,
// leaked, cannot create, change or enumerate anything.
var serviceOps = map[string]bool{
	api.AuthKey: true, api.AuthPartner: true, api.KeysTouch: true, api.Health: true,
	// The workers' directory (workers.RegistryDirectory).
	api.PartnersGet: true, api.SubSystemsList: true,
}

// NeedsAdmin tells whether op needs a forwarded admin credential.
func NeedsAdmin(op string) bool { return !serviceOps[op] }

// WithAdminTokens sets the admin credentials the registry accepts from
// callers. Start refuses to run without them.
func (s *Service) WithAdminTokens(t *admintoken.Set) *Service { s.admin = t; return s }

// checkAdmin is the natsx.Guard check of admin operations.
func (s *Service) checkAdmin(h nats.Header) error {
	return s.admin.Check(h.Get(natsx.HeaderAdminToken))
}

// authKeyProven is auth.key for a caller that proves it holds the key: the
// secret part it was presented must match the stored hash. So the edge's
// role alone, naming a key id, learns neither the hash nor the signing
// secret. A wrong secret is APIKeyInvalid, never "not found": an edge does
// not cache it, so nobody can make a valid key look missing.
func (s *Service) authKeyProven(ctx context.Context, r api.Request) (any, error) {
	if r.Secret == "" {
		return nil, apierr.New(apierr.APIKeyInvalid, "auth.key needs the secret of the key")
	}
	v, err := s.authKey(ctx, r)
	if err != nil {
		return nil, err
	}
	k, ok := v.(tenant.APIKey)
	if !ok || !tenant.SecretMatches(r.Secret, k.Hash) {
		return nil, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	return k, nil
}

// replyKeyOf is how the answers of op are sealed (natsx.SealReplies): admin
// operations under the forwarded admin token, auth.key under the key's
// secret; the other service operations answer nothing secret.
func replyKeyOf(op string) func(micro.Request) []byte {
	switch {
	case op == api.AuthKey:
		return func(req micro.Request) []byte {
			var r api.Request
			if json.Unmarshal(req.Data(), &r) != nil || r.Secret == "" {
				return nil // refused by authKeyProven: an error, not sealed
			}
			return natsx.ReplyKey(natsx.PurposeAuthKey, r.Secret)
		}
	case NeedsAdmin(op):
		return natsx.AdminReplyKey
	}
	return func(micro.Request) []byte { return nil }
}
