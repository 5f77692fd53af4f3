package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

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

const partnerCols = "id, code, name, status, retention_days, rate_limit, require_signature, created_at, updated_at"

func scanPartner(sc interface{ Scan(...any) error }) (tenant.Partner, error) {
	var p tenant.Partner
	var status string
	err := sc.Scan(&p.ID, &p.Code, &p.Name, &status, &p.RetentionDays, &p.RateLimit, &p.RequireSignature, &p.CreatedAt, &p.UpdatedAt)
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
		case hCode != code:
			return time.Since(claimedAt) > claimGrace, nil
		}
		return false, nil
	}
}

func (st *Store) putPartner(ctx context.Context, p tenant.Partner) error {
	return st.write("INSERT INTO partners (bucket, "+partnerCols+") VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		p.ID, p.Code, p.Name, string(p.Status), p.RetentionDays, p.RateLimit, p.RequireSignature, p.CreatedAt, p.UpdatedAt).ExecContext(ctx)
}

func (st *Store) CreatePartner(ctx context.Context, p tenant.Partner) error {
	if _, err := st.GetPartner(ctx, p.ID); err == nil {
		return storage.ErrExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if p.Status != tenant.Deleted {
		if err := st.claim(ctx, partnerCodes, []any{p.Code}, p.ID, st.partnerStale(ctx, p.Code)); err != nil {
			return err
		}
	}
	return st.putPartner(ctx, p)
}

func (st *Store) UpdatePartner(ctx context.Context, p tenant.Partner) error {
	old, err := st.GetPartner(ctx, p.ID)
	if err != nil {
		return err
	}
	wasLive, isLive := old.Status != tenant.Deleted, p.Status != tenant.Deleted
	if isLive && (!wasLive || old.Code != p.Code) {
		if err := st.claim(ctx, partnerCodes, []any{p.Code}, p.ID, st.partnerStale(ctx, p.Code)); err != nil {
			return err
		}
	}
	if err := st.putPartner(ctx, p); err != nil {
		return err
	}
	if wasLive && (!isLive || old.Code != p.Code) {
		return st.release(ctx, partnerCodes, []any{old.Code}, p.ID)
	}
	return nil
}

func (st *Store) GetPartnerByCode(ctx context.Context, code string) (tenant.Partner, error) {
	var id string
	if err := st.s.Query("SELECT partner_id FROM partner_codes WHERE code = ?", code).ScanContext(ctx, &id); err != nil {
		return tenant.Partner{}, notFound(err)
	}
	p, err := st.GetPartner(ctx, id)
	if err == nil && (p.Status == tenant.Deleted || p.Code != code) {
		return tenant.Partner{}, storage.ErrNotFound
	}
	return p, err
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

const subCols = "partner_id, id, code, name, status, created_at, updated_at"

func scanSub(sc interface{ Scan(...any) error }) (tenant.SubSystem, error) {
	var s tenant.SubSystem
	var status string
	err := sc.Scan(&s.PartnerID, &s.ID, &s.Code, &s.Name, &status, &s.CreatedAt, &s.UpdatedAt)
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

func (st *Store) putSub(ctx context.Context, s tenant.SubSystem) error {
	return st.write("INSERT INTO sub_systems ("+subCols+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		s.PartnerID, s.ID, s.Code, s.Name, string(s.Status), s.CreatedAt, s.UpdatedAt).ExecContext(ctx)
}

func (st *Store) CreateSubSystem(ctx context.Context, s tenant.SubSystem) error {
	if _, err := st.GetSubSystem(ctx, s.ID); err == nil {
		return storage.ErrExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if s.Status != tenant.Deleted {
		if err := st.claim(ctx, subSystemCodes, []any{s.PartnerID, s.Code}, s.ID, st.subStale(ctx, s.Code)); err != nil {
			return err
		}
	}
	if err := st.putSub(ctx, s); err != nil {
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
	wasLive, isLive := old.Status != tenant.Deleted, s.Status != tenant.Deleted
	if isLive && (!wasLive || old.Code != s.Code) {
		if err := st.claim(ctx, subSystemCodes, []any{s.PartnerID, s.Code}, s.ID, st.subStale(ctx, s.Code)); err != nil {
			return err
		}
	}
	if err := st.putSub(ctx, s); err != nil {
		return err
	}
	if wasLive && (!isLive || old.Code != s.Code) {
		return st.release(ctx, subSystemCodes, []any{old.PartnerID, old.Code}, s.ID)
	}
	return nil
}

func (st *Store) GetSubSystemByCode(ctx context.Context, partnerID, code string) (tenant.SubSystem, error) {
	var id string
	if err := st.s.Query("SELECT sub_system_id FROM sub_system_codes WHERE partner_id = ? AND code = ?", partnerID, code).ScanContext(ctx, &id); err != nil {
		return tenant.SubSystem{}, notFound(err)
	}
	s, err := st.GetSubSystem(ctx, id)
	if err == nil && (s.Status == tenant.Deleted || s.Code != code || s.PartnerID != partnerID) {
		return tenant.SubSystem{}, storage.ErrNotFound
	}
	return s, err
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

const keyCols = "id, partner_id, name, hash, status, expires_at, created_at, revoked_at, scopes, sub_system_id, rate_limit, require_signature, signing_secret, last_used_at"

func scanKey(sc interface{ Scan(...any) error }) (tenant.APIKey, error) {
	var k tenant.APIKey
	var status string
	var expires, revoked, used time.Time
	err := sc.Scan(&k.ID, &k.PartnerID, &k.Name, &k.Hash, &status, &expires, &k.CreatedAt, &revoked,
		&k.Scopes, &k.SubSystemID, &k.RateLimit, &k.RequireSignature, &k.SigningSecret, &used)
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
		k.Scopes, k.SubSystemID, k.RateLimit, k.RequireSignature, k.SigningSecret}
}

const keyInsert = "INSERT INTO api_keys (id, partner_id, name, hash, status, expires_at, created_at, revoked_at, scopes, sub_system_id, rate_limit, require_signature, signing_secret) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

// putKey writes every column but last_used_at, which only TouchAPIKey writes.
func (st *Store) putKey(ctx context.Context, k tenant.APIKey) error {
	return st.write(keyInsert, keyArgs(k)...).ExecContext(ctx)
}

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
	m := map[string]any{}
	applied, err := st.s.Query(keyInsert+" IF NOT EXISTS", keyArgs(k)...).MapScanCASContext(ctx, m)
	if err != nil {
		return fmt.Errorf("cassandrastore: create key: %w", err)
	}
	if !applied {
		return storage.ErrExists
	}
	return st.write("INSERT INTO api_keys_by_partner (partner_id, id) VALUES (?, ?)", k.PartnerID, k.ID).ExecContext(ctx)
}

func (st *Store) UpdateAPIKey(ctx context.Context, k tenant.APIKey) error {
	if _, err := st.GetAPIKey(ctx, k.ID); err != nil {
		return err
	}
	return st.putKey(ctx, k)
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
