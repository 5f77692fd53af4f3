package registry

import (
	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
)

// serviceOps are the operations a service's own NATS role may call without
// an admin credential: what an edge needs to admit events (auth.*, and the
// sampled last use of a key), what workers need to tell whether an event's
// partner and sub-system exist, and health. None of them creates or changes a
// partner, sub-system or key, and none lists anything. auth.key does answer a
// key's hash and signing secret to whoever names its id: an edge verifies
// signed requests itself, so it needs the secret (README, "Security": what a
// leaked edge credential can still read).
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
