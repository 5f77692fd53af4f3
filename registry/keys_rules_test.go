package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

func callErr(t *testing.T, env registryEnv, op string, req api.Request, out any) error {
	t.Helper()
	return natsx.Call(natsx.WithAdminToken(context.Background(), testAdmin), env.nc, subject.Registry(op), req, out)
}

// keyView reads a key's public view through the admin list.
func keyView(t *testing.T, env registryEnv, partnerID, keyID string) tenant.KeyView {
	t.Helper()
	var keys []tenant.KeyView
	env.call(api.KeysList, api.Request{PartnerID: partnerID}, &keys)
	for _, k := range keys {
		if k.ID == keyID {
			return k
		}
	}
	t.Fatalf("key %s not listed", keyID)
	return tenant.KeyView{}
}

// Instants outside the accepted range are refused naming the field, never
// stored (a year-10000 expiry used to panic the JSON encoder on save).
func TestExpiryBounds(t *testing.T) {
	env := startRegistry(t, nil)
	var p tenant.Partner
	env.call(api.PartnersCreate, api.Request{Code: ptr("bounds"), Name: ptr("B")}, &p)
	var k api.CreatedKey
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)
	far, err := time.Parse(time.RFC3339, "9999-12-31T23:00:00-23:00") // year 10000 in UTC
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{far, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 6, 1, 0, 0, 0, 0, time.UTC)} {
		for _, op := range []string{api.KeysCreate, api.KeysRegenerate} {
			err := callErr(t, env, op, api.Request{PartnerID: p.ID, KeyID: k.ID, Name: ptr("x"), ExpiredAt: &at}, nil)
			ae := apierr.From(err)
			if ae.Code != apierr.ValidationFailed || len(ae.Fields) != 1 || ae.Fields[0].Field != "expiredAt" {
				t.Fatalf("%s with expiry %s: %+v, want validation_failed on expiredAt", op, at, err)
			}
		}
	}
	err = callErr(t, env, api.KeysTouch, api.Request{KeyID: k.ID, At: &far}, nil)
	if !apierr.Is(err, apierr.InvalidParameter) {
		t.Fatalf("touch at year 10000: %v", err)
	}
	// A grace that would overflow once in nanoseconds is refused, not wrapped.
	for _, g := range []int{2592001, 9223372037, 1<<62 + 1, -1} {
		err := callErr(t, env, api.KeysRegenerate, api.Request{PartnerID: p.ID, KeyID: k.ID, GraceSeconds: &g}, nil)
		if ae := apierr.From(err); ae.Code != apierr.ValidationFailed || len(ae.Fields) != 1 || ae.Fields[0].Field != "graceSeconds" {
			t.Fatalf("graceSeconds %d: %+v", g, err)
		}
	}
	err = callErr(t, env, api.PartnersList, api.Request{Page: 1<<62 + 1, PageSize: 200}, nil)
	if !apierr.Is(err, apierr.InvalidParameter) {
		t.Fatalf("a page past the bound: %v", err)
	}
	ok := time.Date(2199, 12, 31, 0, 0, 0, 0, time.UTC)
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("late"), ExpiredAt: &ok}, nil)
}

// The regenerate rules: a revoked key is not regenerated nor changed; a key
// is rotated once; an expired key's replacement gets the same lifetime.
func TestRegenerateRules(t *testing.T) {
	env := startRegistry(t, nil)
	var p tenant.Partner
	env.call(api.PartnersCreate, api.Request{Code: ptr("rules"), Name: ptr("R")}, &p)

	var k api.CreatedKey
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)
	env.call(api.KeysRevoke, api.Request{PartnerID: p.ID, KeyID: k.ID}, nil)
	for _, op := range []string{api.KeysRegenerate, api.KeysUpdate} {
		err := callErr(t, env, op, api.Request{PartnerID: p.ID, KeyID: k.ID, Name: ptr("again")}, nil)
		if ae := apierr.From(err); ae.Code != apierr.KeyRevoked || ae.Code.Status() != 409 {
			t.Fatalf("%s of a revoked key: %+v, want 409 key_revoked", op, err)
		}
	}

	// Rotated once: in grace or not, the old key cannot be rotated again.
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("g")}, &k)
	grace := 3600
	var next api.CreatedKey
	env.call(api.KeysRegenerate, api.Request{PartnerID: p.ID, KeyID: k.ID, GraceSeconds: &grace}, &next)
	old := keyView(t, env, p.ID, k.ID)
	if old.Status != tenant.KeyActive || old.ExpiredAt == nil || !old.ExpiredAt.After(time.Now()) || old.ReplacedBy != next.ID {
		t.Fatalf("old key in grace: %+v", old)
	}
	for i := 0; i < 3; i++ {
		err := callErr(t, env, api.KeysRegenerate, api.Request{PartnerID: p.ID, KeyID: k.ID, GraceSeconds: &grace}, nil)
		if ae := apierr.From(err); ae.Code != apierr.KeyRotated || ae.Code.Status() != 409 {
			t.Fatalf("regenerate of a key in grace (%d): %+v, want 409 key_rotated", i, err)
		}
	}
	keys := []tenant.KeyView{}
	env.call(api.KeysList, api.Request{PartnerID: p.ID}, &keys)
	usable := 0
	for _, kv := range keys {
		if kv.Status == tenant.KeyActive {
			usable++
		}
	}
	if usable != 2 { // the key in grace and its replacement
		t.Fatalf("%d active keys after refused regenerates, want 2", usable)
	}
	// The replacement itself can be rotated.
	env.call(api.KeysRegenerate, api.Request{PartnerID: p.ID, KeyID: next.ID}, nil)
}
