package registry_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// The change broadcast is the commit point of a change: when it cannot be
// published, a revoke (stored) answers propagation_pending instead of OK,
// and repeating it once the bus is back announces it.
func TestRevokeAnswersAfterTheBroadcast(t *testing.T) {
	ctx := context.Background()
	env := startRegistry(t, nil)
	var p tenant.Partner
	env.call(api.PartnersCreate, api.Request{Code: ptr("pending"), Name: ptr("P")}, &p)
	var k api.CreatedKey
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)

	if err := env.js.DeleteStream(ctx, subject.RegistryChangesStream); err != nil {
		t.Fatal(err)
	}
	ctx = natsx.WithAdminToken(ctx, testAdmin)
	err := natsx.Call(ctx, env.nc, subject.Registry(api.KeysRevoke), api.Request{PartnerID: p.ID, KeyID: k.ID}, nil)
	if !apierr.Is(err, apierr.PropagationPending) || apierr.From(err).Code.Status() != 503 {
		t.Fatalf("revoke with no change stream: %v, want 503 propagation_pending", err)
	}
	if stored := keyView(t, env, p.ID, k.ID); stored.Status != tenant.KeyRevoked {
		t.Fatalf("the revoke was not stored: %s", stored.Status)
	}
	err = natsx.Call(ctx, env.nc, subject.Registry(api.PartnersToggle), api.Request{PartnerID: p.ID}, nil)
	if !apierr.Is(err, apierr.PropagationPending) {
		t.Fatalf("toggle with no change stream: %v", err)
	}

	testenv.Provision(t, env.js)
	var view tenant.KeyView
	env.call(api.KeysRevoke, api.Request{PartnerID: p.ID, KeyID: k.ID}, &view) // the repeat announces it
	if view.Status != tenant.KeyRevoked {
		t.Fatalf("repeat revoke: %+v", view)
	}
	cons, err := env.js.OrderedConsumer(ctx, subject.RegistryChangesStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("the repeat revoke announced nothing: %v", err)
		}
		var ch api.Change
		json.Unmarshal(m.Data(), &ch)
		if ch.KeyID == k.ID && ch.Op == "revoked" {
			if ch.KeyVersion != view.Version {
				t.Fatalf("announced version %d, stored %d", ch.KeyVersion, view.Version)
			}
			return
		}
	}
}
