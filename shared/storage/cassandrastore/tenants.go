package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// A unique code is claimed with a lightweight transaction before the record
// that uses it is written, and released after. A claim whose holder is
// deleted is free at once; a claim whose holder does not exist or has another
// code is an interrupted create or rename, free once it is older than
// claimGrace (so an in-flight one is never stolen).
const claimGrace = 30 * time.Second

type codeIndex struct {
	insert, steal, release string
	holderCol              string
}

var (
	partnerCodes = codeIndex{
		insert:    "INSERT INTO partner_codes (code, partner_id, claimed_at) VALUES (?, ?, ?) IF NOT EXISTS",
		steal:     "UPDATE partner_codes SET partner_id = ?, claimed_at = ? WHERE code = ? IF partner_id = ?",
		release:   "DELETE FROM partner_codes WHERE code = ? IF partner_id = ?",
		holderCol: "partner_id",
	}
	subSystemCodes = codeIndex{
		insert:    "INSERT INTO sub_system_codes (partner_id, code, sub_system_id, claimed_at) VALUES (?, ?, ?, ?) IF NOT EXISTS",
		steal:     "UPDATE sub_system_codes SET sub_system_id = ?, claimed_at = ? WHERE partner_id = ? AND code = ? IF sub_system_id = ?",
		release:   "DELETE FROM sub_system_codes WHERE partner_id = ? AND code = ? IF sub_system_id = ?",
		holderCol: "sub_system_id",
	}
)

// claim takes a code for id. stale tells whether the current holder's claim
// may be taken over.
func (st *Store) claim(ctx context.Context, idx codeIndex, keys []any, id string, stale func(holder string, claimedAt time.Time) (bool, error)) error {
	for attempt := 0; attempt < 5; attempt++ {
		now := time.Now().UTC()
		m := map[string]any{}
		applied, err := st.s.Query(idx.insert, append(append([]any{}, keys...), id, now)...).MapScanCASContext(ctx, m)
		if err != nil {
			return fmt.Errorf("cassandrastore: claim code: %w", err)
		}
		if applied {
			return nil
		}
		holder, _ := m[idx.holderCol].(string)
		if holder == id {
			return nil
		}
		claimedAt, _ := m["claimed_at"].(time.Time)
		ok, err := stale(holder, claimedAt)
		if err != nil {
			return err
		}
		if !ok {
			return storage.ErrCodeTaken
		}
		args := append(append([]any{id, now}, keys...), holder)
		applied, err = st.s.Query(idx.steal, args...).MapScanCASContext(ctx, map[string]any{})
		if err != nil {
			return fmt.Errorf("cassandrastore: take over code: %w", err)
		}
		if applied {
			return nil
		}
	}
	return storage.ErrCodeTaken
}

func (st *Store) release(ctx context.Context, idx codeIndex, keys []any, id string) error {
	_, err := st.s.Query(idx.release, append(append([]any{}, keys...), id)...).MapScanCASContext(ctx, map[string]any{})
	if err != nil {
		return fmt.Errorf("cassandrastore: release code: %w", err)
	}
	return nil
}

// ---- partners ----

const partnerCols = "id, code, name, status, retention_days, rate_limit, require_signature, created_at, updated_at, version"

func scanPartner(sc interface{ Scan(...any) error }) (tenant.Partner, error) {
	var p tenant.Partner
	var status string
	err := sc.Scan(&p.ID, &p.Code, &p.Name, &status, &p.RetentionDays, &p.RateLimit, &p.RequireSignature, &p.CreatedAt, &p.UpdatedAt, &p.Version)
	p.Status = tenant.Status(status)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

func (st *Store) GetPartner(ctx context.Context, id string) (tenant.Partner, error) {
	p, err := scanPartner(st.s.Query("SELECT "+partnerCols+" FROM partners WHERE bucket = 0 AND id = ?", id).WithContext(ctx))
	return p, notFound(err)
}

func (st *Store) partnerStale(ctx context.Context, code string) func(string, time.Time) (bool, error) {
	return staleRule(code, func(id string) (string, tenant.Status, error) {
		p, err := st.GetPartner(ctx, id)
		return p.Code, p.Status, err
	})
}

// staleRule is when a code claim may be taken over (see claimGrace); holder
// reads the claiming record's code and status.
func staleRule(code string, holder func(id string) (string, tenant.Status, error)) func(string, time.Time) (bool, error) {
	return func(id string, claimedAt time.Time) (bool, error) {
		hCode, hStatus, err := holder(id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return time.Since(claimedAt) > claimGrace, nil
		case err != nil:
			return false, err
		case hStatus == tenant.Deleted:
			return true, nil
		case storage.CodeKey(hCode) != storage.CodeKey(code):
			return time.Since(claimedAt) > claimGrace, nil
		}
		return false, nil
	}
}

// versionIs is the condition of a compare-and-set on a record read at
// version v: rows written before versions existed have none (read as 0).
func versionIs(v int64) (string, any) {
	if v == 0 {
		return " IF version = null", nil
	}
	return " IF version = ?", v
}

// cas runs a conditional statement; not applied is ErrConflict, or
// ErrNotFound when the row is gone.
func (st *Store) cas(ctx context.Context, what, stmt string, args ...any) error {
	m := map[string]any{}
	applied, err := st.s.Query(stmt, args...).MapScanCASContext(ctx, m)
	if err != nil {
		return fmt.Errorf("cassandrastore: %s: %w", what, err)
	}
	if applied {
		return nil
	}
	if len(m) == 0 {
		return storage.ErrNotFound
	}
	return storage.ErrConflict
}

// codeTakenCI tells whether another live record holds the code up to case,
// for records written before codes were claimed case-insensitively.
func codeTakenCI(codes map[string]string, id, code string) bool {
	for other, c := range codes {
		if other != id && strings.EqualFold(c, code) {
			return true
		}
	}
	return false
}

func (st *Store) livePartnerCodes(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	sc := st.s.Query("SELECT id, code, status FROM partners WHERE bucket = 0").WithContext(ctx).PageSize(1000).Iter().Scanner()
	for sc.Next() {
		var id, code, status string
		if err := sc.Scan(&id, &code, &status); err != nil {
			return nil, err
		}
		if tenant.Status(status) != tenant.Deleted {
			out[id] = code
		}
	}
	return out, sc.Err()
}

// claimCode takes a code for a record that did not hold it (up to case).
func (st *Store) claimCode(ctx context.Context, idx codeIndex, scope []any, id, code string, live map[string]string, stale func(string, time.Time) (bool, error)) error {
	if codeTakenCI(live, id, code) {
		return storage.ErrCodeTaken
	}
	return st.claim(ctx, idx, append(append([]any{}, scope...), storage.CodeKey(code)), id, stale)
}

// releaseCode frees a code a record held, under the case-insensitive key and
// under the code as written (claims made before codes were case-insensitive),
// but not the claim key keep (the one it holds now).
func (st *Store) releaseCode(ctx context.Context, idx codeIndex, scope []any, id, code, keep string) error {
	keys := []string{storage.CodeKey(code)}
	if code != storage.CodeKey(code) {
		keys = append(keys, code)
	}
	for _, k := range keys {
		if k == keep {
			continue
		}
		if err := st.release(ctx, idx, append(append([]any{}, scope...), k), id); err != nil {
			return err
		}
	}
	return nil
}

func (st *Store) CreatePartner(ctx context.Context, p tenant.Partner) error {
	if _, err := st.GetPartner(ctx, p.ID); err == nil {
		return storage.ErrExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if p.Status != tenant.Deleted {
		live, err := st.livePartnerCodes(ctx)
		if err != nil {
			return err
		}
		if err := st.claimCode(ctx, partnerCodes, nil, p.ID, p.Code, live, st.partnerStale(ctx, p.Code)); err != nil {
			return err
		}
	}
	err := st.cas(ctx, "create partner", "INSERT INTO partners (bucket, "+partnerCols+") VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) IF NOT EXISTS",
		p.ID, p.Code, p.Name, string(p.Status), p.RetentionDays, p.RateLimit, p.RequireSignature, p.CreatedAt, p.UpdatedAt)
	if errors.Is(err, storage.ErrConflict) {
		return storage.ErrExists
	}
	return err
}

func (st *Store) UpdatePartner(ctx context.Context, p tenant.Partner) error {
	old, err := st.GetPartner(ctx, p.ID)
	if err != nil {
		return err
	}
	if old.Version != p.Version {
		return storage.ErrConflict
	}
	wasLive, isLive := old.Status != tenant.Deleted, p.Status != tenant.Deleted
	// A record whose code does not change keeps its claim where it is (a
	// claim made before codes were case-insensitive stays as written).
	claimed := isLive && (!wasLive || old.Code != p.Code)
	if claimed {
		live, err := st.livePartnerCodes(ctx)
		if err != nil {
			return err
		}
		if err := st.claimCode(ctx, partnerCodes, nil, p.ID, p.Code, live, st.partnerStale(ctx, p.Code)); err != nil {
			return err
		}
	}
	cond, v := versionIs(p.Version)
	args := []any{p.Code, p.Name, string(p.Status), p.RetentionDays, p.RateLimit, p.RequireSignature, p.UpdatedAt, p.Version + 1, p.ID}
	if v != nil {
		args = append(args, v)
	}
	if err := st.cas(ctx, "update partner", "UPDATE partners SET code = ?, name = ?, status = ?, retention_days = ?, rate_limit = ?, require_signature = ?, updated_at = ?, version = ? WHERE bucket = 0 AND id = ?"+cond, args...); err != nil {
		if claimed && storage.CodeKey(old.Code) != storage.CodeKey(p.Code) {
			_ = st.releaseCode(ctx, partnerCodes, nil, p.ID, p.Code, "") // not ours after all
		}
		return err
	}
	if wasLive && (!isLive || old.Code != p.Code) {
		return st.releaseCode(ctx, partnerCodes, nil, p.ID, old.Code, keepKey(isLive, p.Code))
	}
	return nil
}

// keepKey is the claim key a live record holds after a write.
func keepKey(isLive bool, code string) string {
	if !isLive {
		return ""
	}
	return storage.CodeKey(code)
}

// byCode finds the live record with a code: the one claimed with exactly
// that code first (two records written before codes were case-insensitive
// may differ by case only), then the case-insensitive claim.
func byCode[T any](ctx context.Context, st *Store, stmt string, scope []any, code string, get func(id string) (T, error), codeOf func(T) (string, bool)) (T, error) {
	var zero T
	keys := []string{code}
	if code != storage.CodeKey(code) {
		keys = append(keys, storage.CodeKey(code))
	}
	for _, k := range keys {
		var id string
		err := st.s.Query(stmt, append(append([]any{}, scope...), k)...).ScanContext(ctx, &id)
		if errors.Is(err, gocql.ErrNotFound) {
			continue
		} else if err != nil {
			return zero, err
		}
		r, err := get(id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return zero, err
		}
		c, live := codeOf(r)
		if live && (c == code || k == storage.CodeKey(code) && strings.EqualFold(c, code)) {
			return r, nil
		}
	}
	return zero, storage.ErrNotFound
}

func (st *Store) GetPartnerByCode(ctx context.Context, code string) (tenant.Partner, error) {
	return byCode(ctx, st, "SELECT partner_id FROM partner_codes WHERE code = ?", nil, code,
		func(id string) (tenant.Partner, error) { return st.GetPartner(ctx, id) },
		func(p tenant.Partner) (string, bool) { return p.Code, p.Status != tenant.Deleted })
}

func (st *Store) ListPartners(ctx context.Context, page storage.Page) ([]tenant.Partner, int, error) {
	items := []tenant.Partner{}
	total := 0
	sc := st.s.Query("SELECT " + partnerCols + " FROM partners WHERE bucket = 0").WithContext(ctx).PageSize(1000).Iter().Scanner()
	for sc.Next() {
		p, err := scanPartner(sc)
		if err != nil {
			return nil, 0, err
		}
		if p.Status == tenant.Deleted && !page.IncludeDeleted {
			continue
		}
		if total >= page.Offset && len(items) < page.Limit {
			items = append(items, p)
		}
		total++
	}
	return items, total, sc.Err()
}

// ---- sub-systems ----

const subCols = "partner_id, id, code, name, status, created_at, updated_at, version"

func scanSub(sc interface{ Scan(...any) error }) (tenant.SubSystem, error) {
	var s tenant.SubSystem
	var status string
	err := sc.Scan(&s.PartnerID, &s.ID, &s.Code, &s.Name, &status, &s.CreatedAt, &s.UpdatedAt, &s.Version)
	s.Status = tenant.Status(status)
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return s, err
}

func (st *Store) GetSubSystem(ctx context.Context, id string) (tenant.SubSystem, error) {
	var partnerID string
	if err := st.s.Query("SELECT partner_id FROM sub_system_ids WHERE id = ?", id).ScanContext(ctx, &partnerID); err != nil {
		return tenant.SubSystem{}, notFound(err)
	}
	s, err := scanSub(st.s.Query("SELECT "+subCols+" FROM sub_systems WHERE partner_id = ? AND id = ?", partnerID, id).WithContext(ctx))
	return s, notFound(err)
}

func (st *Store) subStale(ctx context.Context, code string) func(string, time.Time) (bool, error) {
	return staleRule(code, func(id string) (string, tenant.Status, error) {
		ss, err := st.GetSubSystem(ctx, id)
		return ss.Code, ss.Status, err
	})
}

func (st *Store) liveSubCodes(ctx context.Context, partnerID string) (map[string]string, error) {
	subs, err := st.ListSubSystems(ctx, partnerID, false)
	out := map[string]string{}
	for _, ss := range subs {
		out[ss.ID] = ss.Code
	}
	return out, err
}

func (st *Store) CreateSubSystem(ctx context.Context, s tenant.SubSystem) error {
	if _, err := st.GetSubSystem(ctx, s.ID); err == nil {
		return storage.ErrExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if s.Status != tenant.Deleted {
		live, err := st.liveSubCodes(ctx, s.PartnerID)
		if err != nil {
			return err
		}
		if err := st.claimCode(ctx, subSystemCodes, []any{s.PartnerID}, s.ID, s.Code, live, st.subStale(ctx, s.Code)); err != nil {
			return err
		}
	}
	err := st.cas(ctx, "create sub-system", "INSERT INTO sub_systems ("+subCols+") VALUES (?, ?, ?, ?, ?, ?, ?, 1) IF NOT EXISTS",
		s.PartnerID, s.ID, s.Code, s.Name, string(s.Status), s.CreatedAt, s.UpdatedAt)
	if errors.Is(err, storage.ErrConflict) {
		return storage.ErrExists
	} else if err != nil {
		return err
	}
	// The id index last: a sub-system is found by id only once complete.
	return st.write("INSERT INTO sub_system_ids (id, partner_id) VALUES (?, ?)", s.ID, s.PartnerID).ExecContext(ctx)
}

func (st *Store) UpdateSubSystem(ctx context.Context, s tenant.SubSystem) error {
	old, err := st.GetSubSystem(ctx, s.ID)
	if err != nil {
		return err
	}
	if old.Version != s.Version {
		return storage.ErrConflict
	}
	s.PartnerID = old.PartnerID // a sub-system never moves
	wasLive, isLive := old.Status != tenant.Deleted, s.Status != tenant.Deleted
	claimed := isLive && (!wasLive || old.Code != s.Code)
	if claimed {
		live, err := st.liveSubCodes(ctx, s.PartnerID)
		if err != nil {
			return err
		}
		if err := st.claimCode(ctx, subSystemCodes, []any{s.PartnerID}, s.ID, s.Code, live, st.subStale(ctx, s.Code)); err != nil {
			return err
		}
	}
	cond, v := versionIs(s.Version)
	args := []any{s.Code, s.Name, string(s.Status), s.UpdatedAt, s.Version + 1, s.PartnerID, s.ID}
	if v != nil {
		args = append(args, v)
	}
	if err := st.cas(ctx, "update sub-system", "UPDATE sub_systems SET code = ?, name = ?, status = ?, updated_at = ?, version = ? WHERE partner_id = ? AND id = ?"+cond, args...); err != nil {
		if claimed && storage.CodeKey(old.Code) != storage.CodeKey(s.Code) {
			_ = st.releaseCode(ctx, subSystemCodes, []any{s.PartnerID}, s.ID, s.Code, "")
		}
		return err
	}
	if wasLive && (!isLive || old.Code != s.Code) {
		return st.releaseCode(ctx, subSystemCodes, []any{s.PartnerID}, s.ID, old.Code, keepKey(isLive, s.Code))
	}
	return nil
}

func (st *Store) GetSubSystemByCode(ctx context.Context, partnerID, code string) (tenant.SubSystem, error) {
	return byCode(ctx, st, "SELECT sub_system_id FROM sub_system_codes WHERE partner_id = ? AND code = ?", []any{partnerID}, code,
		func(id string) (tenant.SubSystem, error) { return st.GetSubSystem(ctx, id) },
		func(s tenant.SubSystem) (string, bool) {
			return s.Code, s.Status != tenant.Deleted && s.PartnerID == partnerID
		})
}

func (st *Store) ListSubSystems(ctx context.Context, partnerID string, includeDeleted bool) ([]tenant.SubSystem, error) {
	out := []tenant.SubSystem{}
	sc := st.s.Query("SELECT "+subCols+" FROM sub_systems WHERE partner_id = ?", partnerID).WithContext(ctx).Iter().Scanner()
	for sc.Next() {
		s, err := scanSub(sc)
		if err != nil {
			return nil, err
		}
		if s.Status != tenant.Deleted || includeDeleted {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// ---- API keys ----

const keyCols = "id, partner_id, name, hash, status, expires_at, created_at, revoked_at, scopes, sub_system_id, rate_limit, require_signature, signing_secret, last_used_at, replaced_by, version"

func scanKey(sc interface{ Scan(...any) error }) (tenant.APIKey, error) {
	var k tenant.APIKey
	var status string
	var expires, revoked, used time.Time
	err := sc.Scan(&k.ID, &k.PartnerID, &k.Name, &k.Hash, &status, &expires, &k.CreatedAt, &revoked,
		&k.Scopes, &k.SubSystemID, &k.RateLimit, &k.RequireSignature, &k.SigningSecret, &used, &k.ReplacedBy, &k.Version)
	if !used.IsZero() {
		u := used.UTC()
		k.LastUsedAt = &u
	}
	k.Status = tenant.KeyStatus(status)
	k.CreatedAt = k.CreatedAt.UTC()
	if !expires.IsZero() {
		e := expires.UTC()
		k.ExpiresAt = &e
	}
	if !revoked.IsZero() {
		r := revoked.UTC()
		k.RevokedAt = &r
	}
	return k, err
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

func keyArgs(k tenant.APIKey) []any {
	return []any{k.ID, k.PartnerID, k.Name, k.Hash, string(k.Status), nullTime(k.ExpiresAt), k.CreatedAt, nullTime(k.RevokedAt),
		k.Scopes, k.SubSystemID, k.RateLimit, k.RequireSignature, k.SigningSecret, k.ReplacedBy}
}

const keyInsert = "INSERT INTO api_keys (id, partner_id, name, hash, status, expires_at, created_at, revoked_at, scopes, sub_system_id, rate_limit, require_signature, signing_secret, replaced_by, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) IF NOT EXISTS"

func (st *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	k, err := st.GetAPIKey(ctx, id)
	if err != nil {
		return err
	}
	if k.LastUsedAt != nil && !at.After(*k.LastUsedAt) {
		return nil
	}
	// One column, timestamped by the use itself: a late sample never wins.
	return st.write("UPDATE api_keys USING TIMESTAMP ? SET last_used_at = ? WHERE id = ?", at.UnixMicro(), at, id).ExecContext(ctx)
}

func (st *Store) CreateAPIKey(ctx context.Context, k tenant.APIKey) error {
	err := st.cas(ctx, "create key", keyInsert, keyArgs(k)...)
	if errors.Is(err, storage.ErrConflict) {
		return storage.ErrExists
	} else if err != nil {
		return err
	}
	return st.write("INSERT INTO api_keys_by_partner (partner_id, id) VALUES (?, ?)", k.PartnerID, k.ID).ExecContext(ctx)
}

// UpdateAPIKey is conditional on the version; the hash, partner, creation
// time and last use are not written (a key keeps its secret and owner).
func (st *Store) UpdateAPIKey(ctx context.Context, k tenant.APIKey) error {
	old, err := st.GetAPIKey(ctx, k.ID)
	if err != nil {
		return err
	}
	if old.Version != k.Version {
		return storage.ErrConflict
	}
	cond, v := versionIs(k.Version)
	args := []any{k.Name, string(k.Status), nullTime(k.ExpiresAt), nullTime(k.RevokedAt), k.Scopes, k.SubSystemID,
		k.RateLimit, k.RequireSignature, k.SigningSecret, k.ReplacedBy, k.Version + 1, k.ID}
	if v != nil {
		args = append(args, v)
	}
	return st.cas(ctx, "update key", "UPDATE api_keys SET name = ?, status = ?, expires_at = ?, revoked_at = ?, scopes = ?, sub_system_id = ?, rate_limit = ?, require_signature = ?, signing_secret = ?, replaced_by = ?, version = ? WHERE id = ?"+cond, args...)
}

func (st *Store) GetAPIKey(ctx context.Context, id string) (tenant.APIKey, error) {
	k, err := scanKey(st.s.Query("SELECT "+keyCols+" FROM api_keys WHERE id = ?", id).WithContext(ctx))
	return k, notFound(err)
}

func (st *Store) ListAPIKeys(ctx context.Context, partnerID string) ([]tenant.APIKey, error) {
	var ids []string
	iter := st.s.Query("SELECT id FROM api_keys_by_partner WHERE partner_id = ?", partnerID).WithContext(ctx).Iter()
	var id string
	for iter.Scan(&id) {
		ids = append(ids, id)
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	out := make([]tenant.APIKey, len(ids))
	fns := make([]func(context.Context) error, len(ids))
	for i, id := range ids {
		fns[i] = func(ctx context.Context) error {
			var err error
			out[i], err = st.GetAPIKey(ctx, id)
			return err
		}
	}
	if err := fanOut(ctx, st.cfg.WriteConcurrency, fns); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}
