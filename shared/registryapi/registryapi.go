// Package registryapi is the NATS protocol of the registry service: the
// operations it serves, their request, and the change broadcast edges follow.
package registryapi

import (
	"time"

	"github.com/volcanion/tracking/shared/tenant"
)

// Operations; each is the endpoint trk.registry.<op>.
const (
	PartnersList   = "partners.list"
	PartnersGet    = "partners.get"
	PartnersByCode = "partners.byCode"
	PartnersCreate = "partners.create"
	PartnersUpdate = "partners.update"
	PartnersDelete = "partners.delete"
	PartnersToggle = "partners.toggle"

	SubSystemsCreate = "subsystems.create"
	SubSystemsList   = "subsystems.list"
	SubSystemsGet    = "subsystems.get"
	SubSystemsByCode = "subsystems.byCode"
	SubSystemsUpdate = "subsystems.update"
	SubSystemsDelete = "subsystems.delete"
	SubSystemsToggle = "subsystems.toggle"
	SubSystemsAll    = "subsystems.all"

	KeysCreate     = "keys.create"
	KeysList       = "keys.list"
	KeysRevoke     = "keys.revoke"
	KeysRegenerate = "keys.regenerate"
	KeysUpdate     = "keys.update"
	// KeysTouch records a sampled last use of a key (edges send it at most once a minute per key).
	KeysTouch = "keys.touch"

	// AuthKey returns a key record, hash included, for an edge to check a presented key.
	AuthKey = "auth.key"
	// AuthPartner returns a partner with its sub-systems, for an edge's cache.
	AuthPartner = "auth.partner"

	Health = "health"
)

// Request is the one request shape of every operation; each uses the fields
// it needs. Pointers distinguish "not sent" from "empty" in updates.
type Request struct {
	PartnerID   string `json:"partnerId,omitempty"`
	SubSystemID string `json:"subSystemId,omitempty"`
	KeyID       string `json:"keyId,omitempty"`
	// Secret is the secret part of the key an edge was presented (AuthKey):
	// the registry answers only to a caller that holds the key, and seals
	// the answer under it.
	Secret        string     `json:"secret,omitempty"`
	Code          *string    `json:"code,omitempty"`
	Name          *string    `json:"name,omitempty"`
	Status        *string    `json:"status,omitempty"`
	ExpiredAt     *time.Time `json:"expiredAt,omitempty"`
	RetentionDays *int       `json:"retentionDays,omitempty"`
	RateLimit     *int       `json:"rateLimit,omitempty"`
	// Key settings.
	Scopes           []string   `json:"scopes"` // null: unchanged; []: refused (a key needs a scope)
	BindSubSystemID  *string    `json:"bindSubSystemId,omitempty"`
	RequireSignature *bool      `json:"requireSignature,omitempty"`
	GraceSeconds     *int       `json:"graceSeconds,omitempty"`
	At               *time.Time `json:"at,omitempty"`
	Page             int        `json:"page,omitempty"`
	PageSize         int        `json:"pageSize,omitempty"`
	IncludeDeleted   bool       `json:"includeDeleted,omitempty"`
}

// PartnerPage is the answer of PartnersList.
type PartnerPage struct {
	Data       []tenant.Partner `json:"data"`
	Page       int              `json:"page"`
	PageSize   int              `json:"pageSize"`
	TotalCount int              `json:"totalCount"`
	TotalPages int              `json:"totalPages"`
}

// CreatedKey answers KeysCreate and KeysRegenerate: the plain key and its
// signing secret (hex), shown once.
type CreatedKey struct {
	tenant.KeyView
	APIKey        string `json:"apiKey"`
	SigningSecret string `json:"signingSecret"`
	// PropagationPending: the old key of a regenerate is retired in storage
	// but the edges were not told yet; revoking it again tells them.
	PropagationPending bool `json:"propagationPending,omitempty"`
}

// PartnerSnapshot is what an edge caches to admit events for a partner.
type PartnerSnapshot struct {
	Partner    tenant.Partner     `json:"partner"`
	SubSystems []tenant.SubSystem `json:"subSystems"`
	// Version grows with every write of the partner or any of its
	// sub-systems (the sum of their versions, deleted ones included).
	Version int64 `json:"version"`
}

// Change kinds.
const (
	KindPartner   = "partner"
	KindSubSystem = "subSystem"
	KindKey       = "apiKey"
	// KindHeartbeat changes nothing: the registry sends one every few
	// seconds so an edge can tell silence from a lost connection.
	KindHeartbeat = "heartbeat"
)

// HeartbeatInterval is how often the registry sends a heartbeat.
const HeartbeatInterval = 5 * time.Second

// Change is broadcast on every registry write. Its JetStream stream sequence
// is the change sequence: an edge that sees a gap drops its whole cache.
type Change struct {
	Kind        string    `json:"kind"`
	Op          string    `json:"op"`
	PartnerID   string    `json:"partnerId"`
	SubSystemID string    `json:"subSystemId,omitempty"`
	KeyID       string    `json:"keyId,omitempty"`
	At          time.Time `json:"at"`
	// KeyVersion and PartnerVersion are the versions the change produced
	// (of the key; of the partner snapshot): an edge trusts no cached or
	// shared entry older than the last version it heard of.
	KeyVersion     int64 `json:"keyVersion,omitempty"`
	PartnerVersion int64 `json:"partnerVersion,omitempty"`
}

// HealthStatus answers Health.
type HealthStatus struct {
	Storage string `json:"storage"`
}
