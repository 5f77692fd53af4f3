// Package storage is the contract between the services and a storage
// backend. Two backends implement it (embedded Pebble, Cassandra) and both
// must pass storagetest.Run.
package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
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

// Res is the resolution of stored counts and user sketches. Each event is
// counted at every resolution, so a report reads the coarsest slots that
// tile its buckets: days where a bucket covers whole UTC days, then six
// hours, hours, half hours, quarter hours (every UTC offset in use is a
// multiple of 15 minutes: Asia/Kolkata +05:30, Asia/Kathmandu +05:45), and
// minutes for minute series. A day in Asia/Kolkata (18:30 to 18:30 UTC) is
// then ten slots (a half hour, five hours, three six-hour slots, a half
// hour), where hours and quarters alone took 27; its hour, two half hours.
//
// Hours from half past (18:30 to 19:30 UTC) are kept too: they are the
// hours of every zone offset by a half hour (India and Sri Lanka, Iran,
// Afghanistan, Myanmar, Newfoundland, central Australia), so an hourly
// series there reads one slot a point, whose users are its own sketch's,
// not a union of two half hours'. They tile nothing coarser and serve only
// buckets that are one of them.
//
// Weeks (UTC, from Monday) are the coarsest: a month's range is a dozen
// slots, so its users are a dozen sketches and its counts by group a dozen
// rows, and a weekly series in UTC is one slot a point.
type Res int8

const (
	Minute Res = iota
	QuarterHour
	Hour
	Day
	// Added later, so numbered after Day: the number is stored.
	HalfHour
	SixHours
	HalfPastHour
	// Week is an ISO week in UTC (from Monday 00:00): the range of a month's
	// report is a dozen slots, not 30 days.
	Week
)

// Resolutions are all of them, finest first (HalfPastHour, beside Hour,
// after its tiles).
var Resolutions = []Res{Minute, QuarterHour, HalfHour, Hour, HalfPastHour, SixHours, Day, Week}

// Duration is the length of a slot.
func (r Res) Duration() time.Duration {
	switch r {
	case Minute:
		return time.Minute
	case QuarterHour:
		return Quarter
	case HalfHour:
		return 30 * time.Minute
	case Hour, HalfPastHour:
		return time.Hour
	case SixHours:
		return 6 * time.Hour
	case Week:
		return 7 * 24 * time.Hour
	default:
		return 24 * time.Hour
	}
}

func (r Res) String() string {
	switch r {
	case Minute:
		return "minute"
	case QuarterHour:
		return "quarter"
	case HalfHour:
		return "half-hour"
	case Hour:
		return "hour"
	case HalfPastHour:
		return "half-past-hour"
	case SixHours:
		return "six-hours"
	case Day:
		return "day"
	case Week:
		return "week"
	}
	return fmt.Sprintf("Res(%d)", int8(r))
}

// Tiles is the next finer resolution whose slots tile r's (none for
// Minute): a store that keeps r only from some time on sums r's earlier
// slots from these.
func (r Res) Tiles() (Res, bool) {
	switch r {
	case Minute:
		return 0, false
	case HalfPastHour, Hour:
		return HalfHour, true
	case SixHours:
		return Hour, true
	}
	for i, x := range Resolutions {
		if x == r {
			return Resolutions[i-1], true
		}
	}
	return 0, false
}

// halfPast is the phase of HalfPastHour's slots.
const halfPast = 30 * time.Minute

// Phase is how far past a multiple of its duration a slot of r starts.
func (r Res) Phase() time.Duration {
	if r == HalfPastHour {
		return halfPast
	}
	return 0
}

// Slot is the UTC slot of res that holds t. (Truncation counts from
// January 1 of year 1, a Monday: weeks start on Mondays.)
func (r Res) Slot(t time.Time) time.Time {
	if r == HalfPastHour {
		return t.UTC().Add(-halfPast).Truncate(time.Hour).Add(halfPast)
	}
	return t.UTC().Truncate(r.Duration())
}

// Rollup is a family of counts: a key's events counted per slot and group.
type Rollup int8

const (
	// SubSystemTypes: key a sub-system id, groups its event types.
	SubSystemTypes Rollup = iota
	// PartnerSubSystems: key a partner id, groups its sub-system ids.
	PartnerSubSystems
	// PartnerTypes: key a partner id, groups its event types.
	PartnerTypes
)

// Rollups are all of them.
var Rollups = []Rollup{SubSystemTypes, PartnerSubSystems, PartnerTypes}

// Key and Group are what an event is counted under in the rollup.
func (r Rollup) Key(e *event.Event) (key, group string) {
	switch r {
	case SubSystemTypes:
		return e.SubSystemID, e.EventType
	case PartnerSubSystems:
		return e.PartnerID, e.SubSystemID
	default:
		return e.PartnerID, e.EventType
	}
}

// CountsQuery asks for the slots of one rollup key.
type CountsQuery struct {
	Rollup Rollup
	Key    string
	Res    Res
	// The slots starting in [From truncated to Res, To).
	From, To time.Time
	// Only, when set, narrows that to the slots starting in these spans.
	Only Spans
	// Groups asks for each slot's counts by group, not only its total.
	Groups bool
	// Group, when set, counts that group only: Total is its count.
	Group string
	// AlsoOther, with Group, adds OtherGroup's count, where a slot past
	// MaxGroups may hold Group's events (a listing's "may hold one").
	AlsoOther bool
}

// Slot is the counts of one slot.
type Slot struct {
	Start  time.Time // UTC
	Total  int64
	Groups map[string]int64 // when asked for
}

// UserScope is what a sketch of users is kept for.
type UserScope int8

const (
	SubSystemUsers UserScope = iota // key: a sub-system id
	PartnerUsers                    // key: a partner id
	// The users of one event type: a report with eventType counts them.
	SubSystemTypeUsers // key: TypedKey(sub-system id, event type)
	PartnerTypeUsers   // key: TypedKey(partner id, event type)
)

// UserScopes are all of them. A store may keep only some (KeepsUsers).
var UserScopes = []UserScope{SubSystemUsers, PartnerUsers, SubSystemTypeUsers, PartnerTypeUsers}

// Key is the scope's key for an event.
func (u UserScope) Key(e *event.Event) string {
	switch u {
	case SubSystemUsers:
		return e.SubSystemID
	case SubSystemTypeUsers:
		return TypedKey(e.SubSystemID, e.EventType)
	case PartnerTypeUsers:
		return TypedKey(e.PartnerID, e.EventType)
	}
	return e.PartnerID
}

// Typed is the scope of one event type's users within u's key.
func (u UserScope) Typed() UserScope {
	switch u {
	case SubSystemUsers:
		return SubSystemTypeUsers
	case PartnerUsers:
		return PartnerTypeUsers
	}
	return u
}

// Untyped is the scope whose key's users u counts by type.
func (u UserScope) Untyped() UserScope {
	switch u {
	case SubSystemTypeUsers:
		return SubSystemUsers
	case PartnerTypeUsers:
		return PartnerUsers
	}
	return u
}

// Keeps tells whether the scope counts e's user: a typed scope only
// events whose ids TypedKey can hold (no "/": the registry's ids never
// have one, an internal publisher's might).
func (u UserScope) Keeps(e *event.Event) bool {
	switch u {
	case SubSystemTypeUsers:
		return !strings.Contains(e.SubSystemID, "/")
	case PartnerTypeUsers:
		return !strings.Contains(e.PartnerID, "/")
	}
	return true
}

// IsTyped tells whether u counts the users of one event type.
func (u UserScope) IsTyped() bool { return u == SubSystemTypeUsers || u == PartnerTypeUsers }

// typedEscape keeps a typed key one path segment: an event type is any
// printable text, "/" included, and a store may join keys with "/" (so
// type "a/3" must not read as type "a" and something after it).
var typedEscape = strings.NewReplacer("%", "%25", "/", "%2F")

// TypedKey is the key of an event type's users within id (a sub-system or
// partner id, which holds no "/").
func TypedKey(id, eventType string) string { return id + "/" + typedEscape.Replace(eventType) }

var typedUnescape = strings.NewReplacer("%2F", "/", "%25", "%")

// SplitTypedKey is TypedKey's id and event type; ok is false for a key
// TypedKey did not make.
func SplitTypedKey(k string) (id, eventType string, ok bool) {
	id, esc, ok := strings.Cut(k, "/")
	if !ok || strings.Contains(esc, "/") {
		return "", "", false
	}
	eventType = typedUnescape.Replace(esc)
	return id, eventType, TypedKey(id, eventType) == k
}

// A ScopeKeeper is a store that keeps the user sketches of some scopes
// only, or only from some time on (a store upgraded to a release that
// keeps a new scope has none of its sketches before); it answers
// errors.ErrUnsupported when asked for users it does not keep.
type ScopeKeeper interface {
	KeepsUsers(sc UserScope, from time.Time) bool
}

// KeepsUsers tells whether s keeps the user sketches of scope sc for the
// slots from from on: always, unless s is a ScopeKeeper that says
// otherwise.
func KeepsUsers(s any, sc UserScope, from time.Time) bool {
	if k, ok := s.(ScopeKeeper); ok {
		return k.KeepsUsers(sc, from)
	}
	return true
}

// UserOf is who an event counts as: its userId, else its anonymousId (in a
// namespace of their own, as in Segment's spec), else nobody ("").
func UserOf(e *event.Event) string {
	switch {
	case e.UserID != "":
		return "u:" + e.UserID
	case e.AnonymousID != "":
		return "a:" + e.AnonymousID
	}
	return ""
}

// UsersQuery asks for the user sketches of one key.
type UsersQuery struct {
	Scope    UserScope
	Key      string
	Res      Res
	From, To time.Time // slots starting in [From truncated to Res, To)
	Only     Spans     // when set, only the slots starting in these spans
}

// A Span is the slots starting in [From truncated to the resolution, To).
type Span struct{ From, To time.Time }

// Spans are spans in time order, apart (Has searches them). A report in a zone offset by a
// half hour reads two half hours of each day: as one read, a backend can
// fetch them in a few round trips rather than one a day.
type Spans []Span

// Has tells whether slot t (of resolution res) starts in one of the spans.
func (ss Spans) Has(res Res, t time.Time) bool {
	k := sort.Search(len(ss), func(k int) bool { return ss[k].To.After(t) })
	return k < len(ss) && !t.Before(res.Slot(ss[k].From))
}

// Within are the spans clipped to the slots starting in [from, to)
// (ss nil: that range whole), each starting on a slot and naming no slot
// the one before it names (spans apart in time may share a slot: a
// quarter's [10:00, 10:20) and [10:40, 11:00) at hours both name 10:00).
func (ss Spans) Within(res Res, from, to time.Time) Spans {
	from = res.Slot(from)
	if ss == nil {
		return Spans{{from, to}}
	}
	var out Spans
	for _, s := range ss {
		s.From = res.Slot(s.From)
		if s.From.Before(from) {
			s.From = from
		}
		if n := len(out); n > 0 {
			if next := res.Slot(out[n-1].To.Add(res.Duration() - 1)); s.From.Before(next) {
				s.From = next // the first slot starting at or after the last span's end
			}
		}
		if to.Before(s.To) {
			s.To = to
		}
		if s.From.Before(s.To) {
			out = append(out, s)
		}
	}
	return out
}

// SlotUsers is the users of one slot, as an encoded hll.Sketch.
type SlotUsers struct {
	Start  time.Time // UTC
	Sketch []byte
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

// Events stores events, the counts reports read and the sketches of their
// users.
type Events interface {
	// WriteEvents stores events idempotently: an event whose (partnerId, id)
	// is already stored is skipped, and counted nowhere a second time. On
	// error nothing is reported stored, and a retry of the same batch
	// completes it; an error wrapping ErrRefused will fail again.
	WriteEvents(ctx context.Context, events []event.Event) (WriteResult, error)
	GetEvent(ctx context.Context, partnerID, id string) (event.Event, error)
	// Counts returns the non-empty slots of a rollup key, in time order.
	// Every stored event is counted exactly once in every resolution.
	Counts(ctx context.Context, q CountsQuery) ([]Slot, error)
	// Users calls fn with the user sketch of each non-empty slot of a key,
	// in time order; the sketch is only valid during the call. A sketch
	// holds every user of the slot's stored events.
	Users(ctx context.Context, q UsersQuery, fn func(start time.Time, sketch []byte) error) error
	// UserEstimates calls fn with the estimated users of each non-empty
	// slot of a key, in time order: the Estimate of the sketch Users would
	// pass for it. A backend that keeps each slot's estimate beside its
	// sketch reads no sketch for it (a series of 720 hours reads 720
	// numbers, not 1.4 MB of sketches).
	UserEstimates(ctx context.Context, q UsersQuery, fn func(start time.Time, users uint64) error) error
	// ListEvents lists a partner's stored events, newest first (see
	// EventsQuery), each once.
	ListEvents(ctx context.Context, q EventsQuery) ([]event.Event, error)
}

// Reads are the reads a report makes: counts and user sketches.
type Reads interface {
	Counts(ctx context.Context, q CountsQuery) ([]Slot, error)
	Users(ctx context.Context, q UsersQuery, fn func(start time.Time, sketch []byte) error) error
	UserEstimates(ctx context.Context, q UsersQuery, fn func(start time.Time, users uint64) error) error
}

// EstimateUsers is UserEstimates from the sketches Users passes: a
// backend that keeps no estimates answers with it.
func EstimateUsers(ctx context.Context, users func(context.Context, UsersQuery, func(time.Time, []byte) error) error, q UsersQuery, fn func(start time.Time, users uint64) error) error {
	u := new(hll.Union) // counts a sparse sketch by its entries, a dense one by its registers
	return users(ctx, q, func(t time.Time, b []byte) error {
		if err := u.MergeBinary(b); err != nil {
			u.Flush(nil)
			return fmt.Errorf("user sketch of %v: %w", t, err)
		}
		if n := u.Flush(nil); n > 0 {
			return fn(t, n)
		}
		return nil
	})
}

// WithReadAfter asks the reads made with ctx to see every write committed
// before t: a backend that serves a read from one it made a moment before
// (Cassandra keeps a partner's recent manifests for a second) uses only
// those begun at or after t. A report that says its data is complete up to
// an instant, from the bus's progress read at t, passes t: the figures then
// hold everything stored before that reading.
func WithReadAfter(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, readAfterKey{}, t)
}

// ReadAfter is the instant of WithReadAfter, or zero.
func ReadAfter(ctx context.Context) time.Time {
	t, _ := ctx.Value(readAfterKey{}).(time.Time)
	return t
}

type readAfterKey struct{}

// A Tile is the slots of one resolution starting in [From, To).
type Tile struct {
	Res      Res
	From, To time.Time
}

// UnionsQuery asks for the users of each of several unions of slots of one
// key: a report's buckets that are many slots each (a day in Asia/Kolkata
// is ten).
type UnionsQuery struct {
	Scope  UserScope
	Key    string
	Unions [][]Tile // apart from each other, in time order
}

// UnionCountsQuery asks for the events of each of several unions of slots
// of one rollup key (one group of it, when Group is set).
type UnionCountsQuery struct {
	Rollup Rollup
	Key    string
	Group  string
	Unions [][]Tile // apart from each other, in time order
}

// A UnionReader reads figures of unions of slots at once: UnionEstimates
// the Estimate of the merge of the sketches Users passes for each union's
// slots (UnionSketches the merge itself), UnionCounts the sum of the
// Totals Counts passes for them. A
// backend that keeps the figures of unions it computed (and knows when
// their slots change) reads a number for each, not its slots. A read
// wrapper whose backend has none answers errors.ErrUnsupported; a query of
// no unions answers at once, so a caller learns which it is before it
// reads anything.
type UnionReader interface {
	UnionEstimates(ctx context.Context, q UnionsQuery, fn func(i int, users uint64) error) error
	UnionCounts(ctx context.Context, q UnionCountsQuery, fn func(i int, n int64) error) error
	// UnionSketches passes each union's users as one encoded hll.Sketch
	// (valid during the call): the merge of its slots' sketches.
	UnionSketches(ctx context.Context, q UnionsQuery, fn func(i int, sketch []byte) error) error
}

// A CountsEacher answers several counts queries in one go: queries of one
// key's slots that differ in their rollup alone (a partner's by type and
// by sub-system) cost a statement, not one each (Cassandra).
type CountsEacher interface {
	CountsEach(ctx context.Context, qs []CountsQuery) ([][]Slot, error)
}

// CountsEach is each of qs as r.Counts answers it: at once where r is a
// CountsEacher, else one by one.
func CountsEach(ctx context.Context, r Reads, qs []CountsQuery) ([][]Slot, error) {
	if e, ok := r.(CountsEacher); ok {
		return e.CountsEach(ctx, qs)
	}
	out := make([][]Slot, len(qs))
	for i, q := range qs {
		var err error
		if out[i], err = r.Counts(ctx, q); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// A ReadViewer gives a view in which every read sees the same writes, so
// the figures of one report agree while events are written (Pebble: a
// snapshot). release ends the view; a backend without one reads live.
type ReadViewer interface {
	ReadView() (view Reads, release func())
}

// UserSlots collects the user sketches of the non-empty slots of a key.
func UserSlots(ctx context.Context, ev Events, q UsersQuery) ([]SlotUsers, error) {
	out := []SlotUsers{}
	err := ev.Users(ctx, q, func(start time.Time, sk []byte) error {
		out = append(out, SlotUsers{Start: start, Sketch: append([]byte(nil), sk...)})
		return nil
	})
	return out, err
}

// TypeCount is the number of events of one type in one quarter hour.
type TypeCount struct {
	Start     time.Time // of a quarter hour, UTC
	EventType string
	Count     int64
}

// SubSystemCount is the number of events of one sub-system in one quarter hour.
type SubSystemCount struct {
	Start       time.Time // of a quarter hour, UTC
	SubSystemID string
	Count       int64
}

// SubSystemCounts is a sub-system's counts by type of each quarter hour
// starting in [from truncated to a quarter, to).
func SubSystemCounts(ctx context.Context, ev Events, subSystemID string, from, to time.Time) ([]TypeCount, error) {
	slots, err := ev.Counts(ctx, CountsQuery{Rollup: SubSystemTypes, Key: subSystemID, Res: QuarterHour, From: from, To: to, Groups: true})
	out := []TypeCount{}
	for _, s := range slots {
		for _, g := range sortedGroups(s.Groups) {
			out = append(out, TypeCount{Start: s.Start, EventType: g, Count: s.Groups[g]})
		}
	}
	return out, err
}

// PartnerCounts is a partner's counts by sub-system of each quarter hour
// starting in [from truncated to a quarter, to).
func PartnerCounts(ctx context.Context, ev Events, partnerID string, from, to time.Time) ([]SubSystemCount, error) {
	slots, err := ev.Counts(ctx, CountsQuery{Rollup: PartnerSubSystems, Key: partnerID, Res: QuarterHour, From: from, To: to, Groups: true})
	out := []SubSystemCount{}
	for _, s := range slots {
		for _, g := range sortedGroups(s.Groups) {
			out = append(out, SubSystemCount{Start: s.Start, SubSystemID: g, Count: s.Groups[g]})
		}
	}
	return out, err
}

func sortedGroups(m map[string]int64) []string {
	gs := make([]string, 0, len(m))
	for g := range m {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	return gs
}

// Store is a whole backend.
type Store interface {
	Tenants
	Events
	// Retention is how long a partner's events and the rows counting them
	// are kept: a row until its slot's end plus this (0: for ever). A
	// report reads no slot coarser than its buckets' across the horizon,
	// where a row outlives the first events it counts.
	Retention(p tenant.Partner) time.Duration
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
