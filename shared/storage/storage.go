// Package storage is the contract between the services and a storage
// backend. Two backends implement it (embedded Pebble, Cassandra) and both
// must pass storagetest.Run.
package storage

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/tenant"
)

var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("storage: not found")
	// ErrCodeTaken: another live record already uses the code.
	ErrCodeTaken = errors.New("storage: code taken")
	// ErrExists: a record with that id already exists.
	ErrExists = errors.New("storage: already exists")
	// ErrRefused wraps a write error that retrying cannot fix: the data
	// itself is refused (too large, invalid for the backend). Any other
	// write error is taken as transient.
	ErrRefused = errors.New("storage: refused")
	// ErrConflict: the record changed since it was read (its version moved);
	// read it again and re-decide.
	ErrConflict = errors.New("storage: changed concurrently")
)

// CodeKey is the form a code is unique under: codes are unique
// case-insensitively, so "acme" and "ACME" cannot be two partners. Records
// keep the code as written.
func CodeKey(code string) string { return strings.ToLower(code) }

// Page selects a slice of a listing.
type Page struct {
	Offset         int
	Limit          int
	IncludeDeleted bool
}

// Tenants stores partners, sub-systems and keys. Codes are unique,
// case-insensitively, among records that are not Deleted: deleting a record
// releases its code. Listings are in creation order.
//
// Every record carries a Version. Create stores the record with Version 1.
// Update is a compare-and-set: it writes the record only if the stored
// version is still r.Version (the one the caller read), stores it as
// r.Version+1, and otherwise answers ErrConflict and changes nothing. So a
// decision taken on a record (revoke, regenerate, toggle, delete) can never
// be overwritten by a writer that read the record before it.
type Tenants interface {
	CreatePartner(ctx context.Context, p tenant.Partner) error
	// UpdatePartner replaces a partner if unchanged since read (ErrConflict);
	// the code may change (ErrCodeTaken).
	UpdatePartner(ctx context.Context, p tenant.Partner) error
	GetPartner(ctx context.Context, id string) (tenant.Partner, error)
	// GetPartnerByCode finds the live (not Deleted) partner with the code.
	GetPartnerByCode(ctx context.Context, code string) (tenant.Partner, error)
	ListPartners(ctx context.Context, page Page) (items []tenant.Partner, total int, err error)

	CreateSubSystem(ctx context.Context, s tenant.SubSystem) error
	// UpdateSubSystem replaces a sub-system if unchanged since read (ErrConflict).
	UpdateSubSystem(ctx context.Context, s tenant.SubSystem) error
	// GetSubSystem finds a sub-system by id alone; callers check ownership.
	GetSubSystem(ctx context.Context, id string) (tenant.SubSystem, error)
	GetSubSystemByCode(ctx context.Context, partnerID, code string) (tenant.SubSystem, error)
	ListSubSystems(ctx context.Context, partnerID string, includeDeleted bool) ([]tenant.SubSystem, error)

	CreateAPIKey(ctx context.Context, k tenant.APIKey) error
	// UpdateAPIKey replaces a key if unchanged since read (ErrConflict). It
	// never writes LastUsedAt.
	UpdateAPIKey(ctx context.Context, k tenant.APIKey) error
	GetAPIKey(ctx context.Context, id string) (tenant.APIKey, error)
	// TouchAPIKey moves a key's last-used time forward to at (never back),
	// changing nothing else (not the version), so it cannot undo a
	// concurrent revoke nor make one conflict.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
	ListAPIKeys(ctx context.Context, partnerID string) ([]tenant.APIKey, error)
}

// TypeCount is the number of events of one type in one hour.
type TypeCount struct {
	Start     time.Time // of a quarter hour, UTC
	EventType string
	Count     int64
}

// SubSystemCount is the number of events of one sub-system in one hour.
type SubSystemCount struct {
	Start       time.Time // of a quarter hour, UTC
	SubSystemID string
	Count       int64
}

// WriteResult is what a write of a batch did.
type WriteResult struct {
	// Written is how many events were new. It is advisory (metrics): when
	// several writers store the same new event at once, a backend may report
	// it as new to more than one of them, but it is stored and counted once.
	Written int
	// Conflicts are the indexes of events whose (partnerId, id) was already
	// taken by an event with different content (event.Digest): they were
	// not stored; the first event keeps the id.
	Conflicts []int
	// Expired are the indexes of events already past their retention
	// (timestamp + retention is gone): neither stored nor counted, as if
	// they had expired.
	Expired []int
}

// Events stores events and the hourly rollups reports read.
type Events interface {
	// WriteEvents stores events idempotently: an event whose (partnerId, id)
	// is already stored is skipped, and counted nowhere a second time. On
	// error nothing is reported stored, and a retry of the same batch
	// completes it; an error wrapping ErrRefused will fail again.
	WriteEvents(ctx context.Context, events []event.Event) (WriteResult, error)
	GetEvent(ctx context.Context, partnerID, id string) (event.Event, error)
	// SubSystemCounts returns the counts by type of each quarter hour
	// starting in [from truncated to a quarter, to). Quarter hours let a
	// report cut days and hours in any time zone (every offset in use is a
	// multiple of 15 minutes: Asia/Kolkata +05:30, Asia/Kathmandu +05:45).
	SubSystemCounts(ctx context.Context, subSystemID string, from, to time.Time) ([]TypeCount, error)
	// PartnerCounts returns the counts by sub-system of each quarter hour
	// starting in [from truncated to a quarter, to).
	PartnerCounts(ctx context.Context, partnerID string, from, to time.Time) ([]SubSystemCount, error)
}

// Store is a whole backend.
type Store interface {
	Tenants
	Events
	Ping(ctx context.Context) error
	Close() error
}

// Quarter is the resolution of stored counts.
const Quarter = 15 * time.Minute

// Buckets is how many partition buckets one partner-day or sub-system-day
// of events is spread over, so a big partner makes no hot partition.
const Buckets = 16

// Bucket picks the partition bucket of an event id.
func Bucket(id string) int {
	var h uint32 = 2166136261 // FNV-1a: stable across processes and languages
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % Buckets)
}
