// Package tenant holds the records the registry owns: partners, their
// sub-systems and their API keys, and the rules that apply to them.
package tenant

import (
	"regexp"
	"time"

	"github.com/google/uuid"
)

// Status of a partner or sub-system.
type Status string

const (
	Active   Status = "Active"
	Inactive Status = "Inactive"
	Deleted  Status = "Deleted"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool { return s == Active || s == Inactive || s == Deleted }

// KeyStatus of an API key.
type KeyStatus string

const (
	KeyActive  KeyStatus = "Active"
	KeyRevoked KeyStatus = "Revoked"
)

// Partner is a tenant.
type Partner struct {
	ID     string `json:"id"`
	Code   string `json:"code"`
	Name   string `json:"name"`
	Status Status `json:"status"`
	// RetentionDays is how long the partner's events are kept; 0 means the
	// deployment's default.
	RetentionDays int `json:"retentionDays,omitempty"`
	// RateLimit overrides the default events per second of each of the
	// partner's keys; 0 means the default.
	RateLimit int `json:"rateLimit,omitempty"`
	// RequireSignature makes every key of the partner sign its requests.
	RequireSignature bool      `json:"requireSignature,omitempty"`
	CreatedAt        time.Time `json:"createdAt"`
	UpdatedAt        time.Time `json:"updatedAt"`
	// Version counts the writes of the record (storage.Tenants).
	Version int64 `json:"version"`
}

// MaxRetentionDays bounds a partner's retention (10 years).
const MaxRetentionDays = 3650

// SubSystem is one app or service of a partner.
type SubSystem struct {
	ID        string    `json:"id"`
	PartnerID string    `json:"partnerId"`
	Code      string    `json:"code"`
	Name      string    `json:"name"`
	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Version   int64     `json:"version"`
}

// Key scopes.
const (
	ScopeIngest = "ingest" // send events
	ScopeReport = "report" // read the partner's reports
)

// ValidScope reports whether s is a known scope.
func ValidScope(s string) bool { return s == ScopeIngest || s == ScopeReport }

// APIKey is a stored key. Hash is SHA-256 of the secret part; the plain key
// exists only in the create/regenerate answer. SigningSecret is the HMAC key
// of signed requests: a shared secret, so it is stored as it is and shown
// only once.
type APIKey struct {
	ID               string     `json:"id"`
	PartnerID        string     `json:"partnerId"`
	Name             string     `json:"name"`
	Hash             []byte     `json:"hash"`
	Status           KeyStatus  `json:"status"`
	Scopes           []string   `json:"scopes,omitempty"`
	SubSystemID      string     `json:"subSystemId,omitempty"` // bound to one sub-system
	RateLimit        int        `json:"rateLimit,omitempty"`   // events per second; 0: the partner's or default
	RequireSignature bool       `json:"requireSignature,omitempty"`
	SigningSecret    []byte     `json:"signingSecret,omitempty"`
	ExpiresAt        *time.Time `json:"expiresAt,omitempty"`
	CreatedAt        time.Time  `json:"createdAt"`
	RevokedAt        *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt       *time.Time `json:"lastUsedAt,omitempty"`
	// ReplacedBy is the id of the key a regenerate issued in its place; a
	// key is rotated once.
	ReplacedBy string `json:"replacedBy,omitempty"`
	Version    int64  `json:"version"`
}

// HasScope reports whether the key carries a scope. Keys made before scopes
// existed carry only ingest.
func (k APIKey) HasScope(s string) bool {
	if len(k.Scopes) == 0 {
		return s == ScopeIngest
	}
	for _, x := range k.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// Usable reports whether the key may authenticate at time now.
func (k APIKey) Usable(now time.Time) bool {
	return k.Status == KeyActive && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// KeyView is what the API shows of a key: never the hash.
type KeyView struct {
	ID               string     `json:"id"`
	PartnerID        string     `json:"partnerId"`
	Name             string     `json:"name"`
	Prefix           string     `json:"prefix"`
	Status           KeyStatus  `json:"status"`
	Scopes           []string   `json:"scopes"`
	SubSystemID      string     `json:"subSystemId,omitempty"`
	RateLimit        int        `json:"rateLimit,omitempty"`
	RequireSignature bool       `json:"requireSignature"`
	ExpiredAt        *time.Time `json:"expiredAt"`
	CreatedAt        time.Time  `json:"createdAt"`
	RevokedAt        *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt       *time.Time `json:"lastUsedAt"`
	ReplacedBy       string     `json:"replacedBy,omitempty"`
	Version          int64      `json:"version"`
}

// View returns the public view of k.
func (k APIKey) View() KeyView {
	scopes := k.Scopes
	if len(scopes) == 0 {
		scopes = []string{ScopeIngest}
	}
	return KeyView{ID: k.ID, PartnerID: k.PartnerID, Name: k.Name, Prefix: KeyPrefix + k.ID, Status: k.Status,
		Scopes: scopes, SubSystemID: k.SubSystemID, RateLimit: k.RateLimit, RequireSignature: k.RequireSignature,
		ExpiredAt: k.ExpiresAt, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt,
		ReplacedBy: k.ReplacedBy, Version: k.Version}
}

// NewID returns a time-ordered UUID (v7), so key order is creation order.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// ValidID reports whether s is a canonical UUID string.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

var codeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Limits on names and codes.
const (
	MaxCodeLen = 64
	MaxNameLen = 200
)

// ValidCode reports whether s is a usable partner or sub-system code:
// 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit.
func ValidCode(s string) bool { return codeRE.MatchString(s) }
