package registry_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backendtest"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// raceEnv calls a registry over real NATS and returns errors, for races.
type raceEnv struct {
	store storage.Store
	call  func(op string, req api.Request, out any) error
}

func startRace(t *testing.T, store storage.Store) raceEnv {
	ctx := context.Background()
	nc, js := testenv.Conn(t, testenv.NATS(t))
	testenv.Provision(t, js)
	svc, err := registry.New(store, js, zerolog.Nop()).WithAdminTokens(admintoken.Static(testAdmin)).Start(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return raceEnv{store: store, call: func(op string, req api.Request, out any) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return natsx.Call(natsx.WithAdminToken(ctx, testAdmin), nc, subject.Registry(op), req, out)
	}}
}

// both runs a and b at once, released together.
func both(a, b func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, f := range []func(){a, b} {
		wg.Add(1)
		go func(f func()) { defer wg.Done(); <-start; f() }(f)
	}
	close(start)
	wg.Wait()
}

const interleavings = 200

// A revoke that answered OK is final: an update or regenerate racing it
// never leaves the key usable, and a replacement key is usable only if its
// regenerate answered it (so it linearised before the revoke).
func TestRevokeRaces(t *testing.T) {
	for name, open := range backendtest.All(t, "registry_race") {
		t.Run(name, func(t *testing.T) {
			env := startRace(t, open(t))
			var p tenant.Partner
			if err := env.call(api.PartnersCreate, api.Request{Code: ptr("race"), Name: ptr("Race")}, &p); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			outcomes := map[string]int{}
			for i := 0; i < interleavings; i++ {
				var k api.CreatedKey
				if err := env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k); err != nil {
					t.Fatal(err)
				}
				var revokeErr, otherErr error
				var regen api.CreatedKey
				regenerate := i%2 == 1
				both(func() {
					revokeErr = env.call(api.KeysRevoke, api.Request{PartnerID: p.ID, KeyID: k.ID}, nil)
				}, func() {
					if regenerate {
						grace := 0
						if i%4 == 3 {
							grace = 3600 // the old key would keep working an hour, but for the revoke
						}
						otherErr = env.call(api.KeysRegenerate, api.Request{PartnerID: p.ID, KeyID: k.ID, GraceSeconds: &grace}, &regen)
					} else {
						otherErr = env.call(api.KeysUpdate, api.Request{PartnerID: p.ID, KeyID: k.ID, Name: ptr(fmt.Sprint("renamed", i))}, nil)
					}
				})
				if revokeErr != nil {
					t.Fatalf("interleaving %d: revoke: %v", i, revokeErr)
				}
				if otherErr != nil && !apierr.Is(otherErr, apierr.KeyRevoked) {
					t.Fatalf("interleaving %d: the racing change answered %v, want success or key_revoked", i, otherErr)
				}
				outcomes[fmt.Sprintf("regenerate=%v ok=%v", regenerate, otherErr == nil)]++
				got, err := env.store.GetAPIKey(ctx, k.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != tenant.KeyRevoked || got.Usable(time.Now()) {
					t.Fatalf("interleaving %d: the revoked key came back: %+v (race answered %v)", i, got.View(), otherErr)
				}
				keys, err := env.store.ListAPIKeys(ctx, p.ID)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range keys {
					if x.Usable(time.Now()) && (otherErr != nil || x.ID != regen.ID) {
						t.Fatalf("interleaving %d: key %s is usable but no answer handed it out", i, x.ID)
					}
				}
				if regen.ID != "" {
					// Retire the replacement so the next round starts clean.
					if err := env.call(api.KeysRevoke, api.Request{PartnerID: p.ID, KeyID: regen.ID}, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			t.Logf("outcomes over %d interleavings: %v", interleavings, outcomes)
		})
	}
}

// A partner or sub-system delete that answered OK is final: a toggle or
// update racing it never brings the record back, and nothing of a deleted
// partner (keys created meanwhile included) stays usable.
func TestDeleteRaces(t *testing.T) {
	for name, open := range backendtest.All(t, "registry_race") {
		t.Run(name, func(t *testing.T) {
			env := startRace(t, open(t))
			ctx := context.Background()
			outcomes := map[string]int{}
			for i := 0; i < interleavings; i++ {
				var p tenant.Partner
				if err := env.call(api.PartnersCreate, api.Request{Code: ptr(fmt.Sprint("del", i)), Name: ptr("D")}, &p); err != nil {
					t.Fatal(err)
				}
				var ss tenant.SubSystem
				if err := env.call(api.SubSystemsCreate, api.Request{PartnerID: p.ID, Code: ptr("web"), Name: ptr("Web")}, &ss); err != nil {
					t.Fatal(err)
				}
				// Sub-system: toggle against delete.
				var delErr, togErr error
				both(func() {
					delErr = env.call(api.SubSystemsDelete, api.Request{PartnerID: p.ID, SubSystemID: ss.ID}, nil)
				}, func() {
					togErr = env.call(api.SubSystemsToggle, api.Request{PartnerID: p.ID, SubSystemID: ss.ID}, nil)
				})
				if delErr != nil || togErr != nil && !apierr.Is(togErr, apierr.SubSystemDeleted) {
					t.Fatalf("interleaving %d: sub-system delete %v, toggle %v", i, delErr, togErr)
				}
				if got, _ := env.store.GetSubSystem(ctx, ss.ID); got.Status != tenant.Deleted {
					t.Fatalf("interleaving %d: deleted sub-system came back %s", i, got.Status)
				}
				// Partner: toggle (or update, or a new key) against delete.
				var keyOut api.CreatedKey
				both(func() {
					delErr = env.call(api.PartnersDelete, api.Request{PartnerID: p.ID}, nil)
				}, func() {
					switch i % 3 {
					case 0:
						togErr = env.call(api.PartnersToggle, api.Request{PartnerID: p.ID}, nil)
					case 1:
						togErr = env.call(api.PartnersUpdate, api.Request{PartnerID: p.ID, Status: ptr("Active"), Name: ptr("again")}, nil)
					case 2:
						togErr = env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("late")}, &keyOut)
					}
				})
				if delErr != nil || togErr != nil && !apierr.Is(togErr, apierr.PartnerDeleted) {
					t.Fatalf("interleaving %d: partner delete %v, racing change %v", i, delErr, togErr)
				}
				outcomes[fmt.Sprintf("case=%d ok=%v", i%3, togErr == nil)]++
				if got, _ := env.store.GetPartner(ctx, p.ID); got.Status != tenant.Deleted {
					t.Fatalf("interleaving %d: deleted partner came back %s", i, got.Status)
				}
				keys, _ := env.store.ListAPIKeys(ctx, p.ID)
				for _, k := range keys {
					if k.Status != tenant.KeyRevoked {
						t.Fatalf("interleaving %d: key %s of a deleted partner is %s", i, k.ID, k.Status)
					}
				}
				subs, _ := env.store.ListSubSystems(ctx, p.ID, false)
				for _, s := range subs {
					if s.Status == tenant.Active {
						t.Fatalf("interleaving %d: sub-system %s of a deleted partner is active", i, s.ID)
					}
				}
			}
			t.Logf("outcomes over %d interleavings: %v", interleavings, outcomes)
		})
	}
}
