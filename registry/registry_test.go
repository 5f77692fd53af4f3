package registry_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

func ptr(s string) *string { return &s }

// testAdmin is the admin credential the test registry accepts.
const testAdmin = "registry-test-admin-token"

// registryEnv is a registry on a real embedded NATS and Pebble store.
type registryEnv struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	call func(op string, req api.Request, out any)
}

func startRegistry(t *testing.T, cache *rcache.Cache) registryEnv {
	t.Helper()
	ctx := context.Background()
	nc, js := testenv.Conn(t, testenv.NATS(t))
	testenv.Provision(t, js)
	svc, err := registry.New(testenv.Pebble(t), js, zerolog.Nop()).WithCache(cache).WithAdminTokens(admintoken.Static(testAdmin)).Start(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return registryEnv{nc: nc, js: js, call: func(op string, req api.Request, out any) {
		t.Helper()
		if err := natsx.Call(natsx.WithAdminToken(ctx, testAdmin), nc, subject.Registry(op), req, out); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}}
}

// Every write broadcasts one change, in sequence; reads broadcast nothing.
func TestChangesBroadcast(t *testing.T) {
	ctx := context.Background()
	env := startRegistry(t, nil)
	nc, js, call := env.nc, env.js, env.call
	var p tenant.Partner
	call(api.PartnersCreate, api.Request{Code: ptr("acme"), Name: ptr("Acme")}, &p)
	var ss tenant.SubSystem
	call(api.SubSystemsCreate, api.Request{PartnerID: p.ID, Code: ptr("web"), Name: ptr("Web")}, &ss)
	var k api.CreatedKey
	call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)
	call(api.PartnersGet, api.Request{PartnerID: p.ID}, &p)
	call(api.KeysList, api.Request{PartnerID: p.ID}, nil)
	call(api.KeysRevoke, api.Request{PartnerID: p.ID, KeyID: k.ID}, nil)
	call(api.SubSystemsToggle, api.Request{PartnerID: p.ID, SubSystemID: ss.ID}, nil)
	call(api.PartnersDelete, api.Request{PartnerID: p.ID}, nil)

	// auth.key returns the hash (edges need it) to a holder of the key; the
	// public views never do.
	var full tenant.APIKey
	_, secret, _ := tenant.ParseKey(k.APIKey)
	sctx := natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, secret))
	if err := natsx.Call(sctx, nc, subject.Registry(api.AuthKey), api.Request{KeyID: k.ID, Secret: secret}, &full); err != nil {
		t.Fatal(err)
	}
	if len(full.Hash) != 32 || full.Status != tenant.KeyRevoked {
		t.Fatalf("auth.key: %+v", full)
	}
	if err := natsx.Call(ctx, nc, subject.Registry(api.AuthKey), api.Request{KeyID: "../etc", Secret: "x"}, nil); !apierr.Is(err, apierr.APIKeyNotFound) {
		t.Fatalf("malformed key id: %v", err)
	}

	stream, err := js.Stream(ctx, subject.RegistryChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(20, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{api.KindPartner + "/created", api.KindSubSystem + "/created", api.KindKey + "/created",
		api.KindKey + "/revoked", api.KindSubSystem + "/toggled", api.KindPartner + "/deleted"}
	i := 0
	for m := range batch.Messages() {
		var ch api.Change
		if err := json.Unmarshal(m.Data(), &ch); err != nil {
			t.Fatal(err)
		}
		md, _ := m.Metadata()
		if i >= len(want) || ch.Kind+"/"+ch.Op != want[i] || ch.PartnerID != p.ID || md.Sequence.Stream != uint64(i+1) {
			t.Fatalf("change %d: %+v (seq %d), want %s", i, ch, md.Sequence.Stream, want[min(i, len(want)-1)])
		}
		i++
	}
	if i != len(want) {
		t.Fatalf("%d changes, want %d", i, len(want))
	}
}

// With the shared cache, the registry writes the fresh record before the
// change goes out, so an edge reading Redis after the change never sees the
// old one.
func TestSharedCache(t *testing.T) {
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	ctx := context.Background()
	cache, err := rcache.Open(ctx, url, "test:"+tenant.NewID()+":")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	env := startRegistry(t, cache)
	js, call := env.js, env.call
	var p tenant.Partner
	call(api.PartnersCreate, api.Request{Code: ptr("shared"), Name: ptr("S")}, &p)
	var k api.CreatedKey
	call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)
	var got tenant.APIKey
	if _, ok, _ := cache.GetVersioned(ctx, rcache.KeyOfAPIKey(k.ID), &got); !ok || got.Status != tenant.KeyActive || len(got.Hash) != 32 {
		t.Fatalf("shared entry after create: %v %+v", ok, got)
	}
	// Watch the change stream: when the revoke change arrives, Redis already holds the revoked key.
	cons, _ := js.OrderedConsumer(ctx, subject.RegistryChangesStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	seen := make(chan string, 1)
	cc, _ := cons.Consume(func(m jetstream.Msg) {
		var snap tenant.APIKey
		cache.GetVersioned(ctx, rcache.KeyOfAPIKey(k.ID), &snap)
		seen <- string(snap.Status)
	})
	defer cc.Stop()
	call(api.KeysRevoke, api.Request{PartnerID: p.ID, KeyID: k.ID}, nil)
	select {
	case st := <-seen:
		if st != string(tenant.KeyRevoked) {
			t.Fatalf("when the change arrived, Redis held a %s key", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change broadcast")
	}
	var snap api.PartnerSnapshot
	call(api.PartnersToggle, api.Request{PartnerID: p.ID}, nil)
	if _, ok, _ := cache.GetVersioned(ctx, rcache.KeyOfPartner(p.ID), &snap); !ok || snap.Partner.Status != tenant.Inactive {
		t.Fatalf("partner snapshot after toggle: %v %+v", ok, snap.Partner)
	}
}

// TestAdminOperationsNeedTheCredential: over NATS alone (a service's role,
// no forwarded admin token, or a wrong one) every admin operation is
// refused before it runs; the service operations stay open.
func TestAdminOperationsNeedTheCredential(t *testing.T) {
	env := startRegistry(t, nil)
	ctx := context.Background()
	var p tenant.Partner
	env.call(api.PartnersCreate, api.Request{Code: ptr("guarded"), Name: ptr("G")}, &p)
	var k api.CreatedKey
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)
	admin := []string{api.PartnersList, api.PartnersByCode, api.PartnersCreate, api.PartnersUpdate, api.PartnersDelete, api.PartnersToggle,
		api.SubSystemsCreate, api.SubSystemsGet, api.SubSystemsByCode, api.SubSystemsUpdate, api.SubSystemsDelete, api.SubSystemsToggle, api.SubSystemsAll,
		api.KeysCreate, api.KeysList, api.KeysRevoke, api.KeysRegenerate, api.KeysUpdate}
	req := api.Request{PartnerID: p.ID, KeyID: k.ID, Code: ptr("x"), Name: ptr("x")}
	for _, op := range admin {
		if !registry.NeedsAdmin(op) {
			t.Errorf("%s is open to any service role", op)
		}
		for tok, want := range map[string]apierr.Code{"": apierr.AdminRequired, "not-the-admin-token": apierr.AdminInvalid} {
			if err := natsx.Call(natsx.WithAdminToken(ctx, tok), env.nc, subject.Registry(op), req, nil); !apierr.Is(err, want) {
				t.Errorf("%s with token %q: %v, want %s", op, tok, err, want)
			}
		}
	}
	// Nothing changed: the partner is still there, active, with its one key.
	var keys []tenant.KeyView
	env.call(api.KeysList, api.Request{PartnerID: p.ID}, &keys)
	var got tenant.Partner
	env.call(api.PartnersGet, api.Request{PartnerID: p.ID}, &got)
	if len(keys) != 1 || keys[0].Status != tenant.KeyActive || got.Status != p.Status || got.Name != "G" {
		t.Fatalf("a refused call changed something: keys %+v, partner %+v", keys, got)
	}
	// What edges and workers need without an admin: no token at all.
	for _, op := range []string{api.AuthPartner, api.KeysTouch, api.Health, api.PartnersGet, api.SubSystemsList} {
		now := time.Now()
		if err := natsx.Call(ctx, env.nc, subject.Registry(op), api.Request{PartnerID: p.ID, KeyID: k.ID, At: &now}, nil); err != nil {
			t.Errorf("service operation %s: %v", op, err)
		}
	}
}

// TestSecretsNeedTheKeyAndAreSealed: auth.key answers only a caller holding
// the key; answers with secrets or admin data are sealed, so a connection of
// the same role reading another's _INBOX learns nothing from them.
func TestSecretsNeedTheKeyAndAreSealed(t *testing.T) {
	env := startRegistry(t, nil)
	ctx := context.Background()
	var p tenant.Partner
	env.call(api.PartnersCreate, api.Request{Code: ptr("sealed"), Name: ptr("S")}, &p)
	var k api.CreatedKey
	env.call(api.KeysCreate, api.Request{PartnerID: p.ID, Name: ptr("k")}, &k)
	_, secret, _ := tenant.ParseKey(k.APIKey)
	for _, wrong := range []string{"", "not-the-secret", secret + "x"} {
		sctx := natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, wrong))
		if err := natsx.Call(sctx, env.nc, subject.Registry(api.AuthKey), api.Request{KeyID: k.ID, Secret: wrong}, &tenant.APIKey{}); !apierr.Is(err, apierr.APIKeyInvalid) {
			t.Fatalf("auth.key with secret %q: %v", wrong, err)
		}
	}
	// On the wire: what a reader of the reply subject sees.
	raw := func(op string, req api.Request, token string) *nats.Msg {
		t.Helper()
		m := nats.NewMsg(subject.Registry(op))
		m.Data, _ = json.Marshal(req)
		if token != "" {
			m.Header.Set(natsx.HeaderAdminToken, token)
		}
		reply, err := env.nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	for _, m := range []*nats.Msg{
		raw(api.AuthKey, api.Request{KeyID: k.ID, Secret: secret}, ""),
		raw(api.KeysRegenerate, api.Request{PartnerID: p.ID, KeyID: k.ID}, testAdmin),
		raw(api.KeysList, api.Request{PartnerID: p.ID}, testAdmin),
	} {
		if m.Header.Get(natsx.HeaderSealed) == "" || json.Valid(m.Data) || strings.Contains(string(m.Data), k.ID) {
			t.Fatalf("an answer travels in the clear: %q", m.Data)
		}
	}
}
