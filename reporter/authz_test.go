package reporter_test

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"hash/crc32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// fakeAuthKey answers auth.key as the registry does (registry
// authKeyProven): the record only to a caller holding the key's secret,
// sealed under it. It counts the lookups of each key id.
type fakeAuthKey struct {
	mu    sync.Mutex
	keys  map[string]tenant.APIKey
	calls map[string]int
}

func (f *fakeAuthKey) serve(t *testing.T, nc *nats.Conn) micro.Service {
	svc, err := micro.AddService(nc, micro.Config{Name: "fake-registry", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	h := natsx.Handler(zerolog.Nop(), "t", api.AuthKey, time.Second, func(_ context.Context, data []byte) (any, error) {
		var r api.Request
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[r.KeyID]++
		k, ok := f.keys[r.KeyID]
		if !ok {
			return nil, apierr.New(apierr.APIKeyNotFound, "API key not found")
		}
		if r.Secret == "" || !tenant.SecretMatches(r.Secret, k.Hash) {
			return nil, apierr.New(apierr.APIKeyInvalid, "invalid API key")
		}
		return k, nil
	})
	keyOf := func(req micro.Request) []byte {
		var r api.Request
		if json.Unmarshal(req.Data(), &r) != nil || r.Secret == "" {
			return nil
		}
		return natsx.ReplyKey(natsx.PurposeAuthKey, r.Secret)
	}
	if err := svc.AddEndpoint("auth_key", natsx.SealReplies(keyOf, h), micro.WithEndpointSubject(subject.Registry(api.AuthKey))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return svc
}

func (f *fakeAuthKey) lookups(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

// keyOf is a well-formed key of an id and secret (the checksum as
// tenant.GenerateKey makes it): an id and a secret that need not go together.
func keyOf(id, secret string) string {
	body := tenant.KeyPrefix + id + "_" + secret
	v := crc32.ChecksumIEEE([]byte(body))
	sum := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return body + strings.ToLower(sum)
}

// TestReportsNeedACredential: the reporter answers a report only for the
// admin token, or a usable key with the report scope of the queried
// partner, forwarded by the edge; it checks a key with the registry's
// auth.key itself, and seals its answers.
func TestReportsNeedACredential(t *testing.T) {
	ctx := context.Background()
	store := testenv.Pebble(t)
	nc, _ := testenv.Conn(t, testenv.NATS(t))
	const admin = "the-reporters-admin-token"

	if _, err := reporter.New(store, zerolog.Nop()).Start(nc); err == nil {
		t.Fatal("the reporter started without admin tokens")
	}

	partner := func(code string, status tenant.Status) (tenant.Partner, tenant.SubSystem) {
		p := tenant.Partner{ID: tenant.NewID(), Code: code, Name: "Partner " + code, Status: status}
		ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "web", Name: "Web", Status: tenant.Active}
		if err := store.CreatePartner(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := store.CreateSubSystem(ctx, ss); err != nil {
			t.Fatal(err)
		}
		if _, err := store.WriteEvents(ctx, []event.Event{{ID: code, PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", Timestamp: t0}}); err != nil {
			t.Fatal(err)
		}
		return p, ss
	}
	a, subA := partner("a", tenant.Active)
	b, subB := partner("b", tenant.Active)
	c, _ := partner("c", tenant.Inactive)

	reg := &fakeAuthKey{keys: map[string]tenant.APIKey{}, calls: map[string]int{}}
	past := time.Now().Add(-time.Hour)
	mint := func(p tenant.Partner, mod func(*tenant.APIKey), scopes ...string) (string, string) {
		id, plain, hash := tenant.GenerateKey()
		k := tenant.APIKey{ID: id, PartnerID: p.ID, Hash: hash, Status: tenant.KeyActive, Scopes: scopes, CreatedAt: time.Now()}
		if mod != nil {
			mod(&k)
		}
		reg.keys[id] = k
		return id, plain
	}
	reportAID, reportA := mint(a, nil, tenant.ScopeReport)
	ingestAID, ingestA := mint(a, nil, tenant.ScopeIngest)
	_, legacyA := mint(a, nil) // made before scopes: ingest only
	_, revokedA := mint(a, func(k *tenant.APIKey) { k.Status = tenant.KeyRevoked }, tenant.ScopeReport)
	_, expiredA := mint(a, func(k *tenant.APIKey) { k.ExpiresAt = &past }, tenant.ScopeReport)
	_, reportC := mint(c, nil, tenant.ScopeReport)
	_, late := mint(a, nil, tenant.ScopeReport)
	_, other, _ := tenant.ParseKey(late)
	regSvc := reg.serve(t, nc)

	svc, err := reporter.New(store, zerolog.Nop()).WithAdminTokens(admintoken.Static(admin)).Start(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })

	from, to := t0, t0.Add(24*time.Hour)
	partnerQ := func(cctx context.Context, id string) error {
		var r report.PartnerReport
		err := natsx.Call(cctx, nc, subject.Report(reportapi.Partner), report.PartnerQuery{PartnerID: id, From: from, To: to}, &r)
		if err == nil && (r.PartnerID != id || r.TotalEvents != 1) {
			t.Errorf("partner report of %s: %+v", id, r)
		}
		return err
	}
	subQ := func(cctx context.Context, id, partnerID string) error {
		var r report.SubSystemReport
		err := natsx.Call(cctx, nc, subject.Report(reportapi.SubSystem), report.SubSystemQuery{SubSystemID: id, PartnerID: partnerID, From: from, To: to}, &r)
		if err == nil && (r.SubSystemID != id || r.TotalEvents != 1) {
			t.Errorf("sub-system report of %s: %+v", id, r)
		}
		return err
	}
	expect := func(what string, err error, want apierr.Code) {
		t.Helper()
		if want == "" && err != nil || want != "" && !apierr.Is(err, want) {
			t.Errorf("%s: %v, want %q", what, err, want)
		}
	}

	// No credential, or a wrong admin token: refused, both queries; health
	// needs none.
	for _, cctx := range []context.Context{ctx, natsx.WithAdminToken(ctx, "not-the-admin-token-0123")} {
		want := apierr.AdminRequired
		if cctx != ctx {
			want = apierr.AdminInvalid
		}
		expect("partner report", partnerQ(cctx, a.ID), want)
		expect("sub-system report", subQ(cctx, subA.ID, ""), want)
	}
	expect("health", natsx.Call(ctx, nc, subject.Report(reportapi.Health), struct{}{}, nil), "")

	// The admin reads every partner and sub-system.
	asAdmin := natsx.WithAdminToken(ctx, admin)
	for _, p := range []tenant.Partner{a, b, c} {
		expect("admin, partner "+p.Code, partnerQ(asAdmin, p.ID), "")
	}
	expect("admin, sub-system of b", subQ(asAdmin, subB.ID, ""), "")

	// A report key of A reads A's, and nothing of B's, whatever the query says.
	withA := natsx.WithAPIKey(ctx, reportA)
	expect("key A, partner A", partnerQ(withA, a.ID), "")
	expect("key A, sub-system of A", subQ(withA, subA.ID, ""), "")
	expect("key A, partner B", partnerQ(withA, b.ID), apierr.PartnerNotFound)
	expect("key A, sub-system of B", subQ(withA, subB.ID, ""), apierr.SubSystemNotFound)
	expect("key A, sub-system of B claimed as B's", subQ(withA, subB.ID, b.ID), apierr.SubSystemNotFound)
	// Verified once, then cached; a cached key id never admits another secret.
	if n := reg.lookups(reportAID); n != 1 {
		t.Errorf("the key was looked up %d times in 5 queries, want 1 (cached)", n)
	}
	expect("key A's id with another secret", partnerQ(natsx.WithAPIKey(ctx, keyOf(reportAID, other)), a.ID), apierr.APIKeyInvalid)
	// A secret the registry refuses is not cached: the right one is asked again.
	expect("ingest key's id, another secret", partnerQ(natsx.WithAPIKey(ctx, keyOf(ingestAID, other)), a.ID), apierr.APIKeyInvalid)
	expect("ingest key", partnerQ(natsx.WithAPIKey(ctx, ingestA), a.ID), apierr.ScopeMissing)
	if n := reg.lookups(ingestAID); n != 2 {
		t.Errorf("the ingest key was looked up %d times, want 2", n)
	}

	// Keys that may not read reports.
	for name, c := range map[string]struct {
		key  string
		want apierr.Code
	}{
		"ingest key of A":          {ingestA, apierr.ScopeMissing},
		"key of A without scopes":  {legacyA, apierr.ScopeMissing},
		"revoked key of A":         {revokedA, apierr.APIKeyRevoked},
		"expired key of A":         {expiredA, apierr.APIKeyExpired},
		"report key of inactive C": {reportC, apierr.PartnerInactive},
		"not a key":                {"vtk_not-a-key", apierr.APIKeyInvalid},
		"unknown key":              {keyOf("aaaaaaaaaaaaa", other), apierr.APIKeyInvalid},
	} {
		expect(name+", partner report", partnerQ(natsx.WithAPIKey(ctx, c.key), a.ID), c.want)
		expect(name+", sub-system report", subQ(natsx.WithAPIKey(ctx, c.key), subA.ID, ""), c.want)
	}

	// On the wire the answers are sealed under the caller's credential.
	for h, v := range map[string]string{natsx.HeaderAdminToken: admin, natsx.HeaderAPIKey: reportA} {
		m := nats.NewMsg(subject.Report(reportapi.Partner))
		m.Data, _ = json.Marshal(report.PartnerQuery{PartnerID: a.ID, From: from, To: to})
		m.Header.Set(h, v)
		reply, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil || reply.Header.Get(natsx.HeaderSealed) == "" || strings.Contains(string(reply.Data), a.Name) {
			t.Errorf("answer to %s in the clear: %v %.100q", h, err, reply.Data)
		}
	}

	// Without the registry a key not yet verified is refused, never admitted.
	regSvc.Stop()
	expect("a new key, no registry", partnerQ(natsx.WithAPIKey(ctx, late), a.ID), apierr.Unavailable)
}
