package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// heldStore holds every read of one partner until released.
type heldStore struct {
	storage.Store
	held    string
	entered chan struct{}
	release chan struct{}
}

func (s *heldStore) GetPartner(ctx context.Context, id string) (tenant.Partner, error) {
	if id == s.held {
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
		}
	}
	return s.Store.GetPartner(ctx, id)
}

// startHeld starts a registry component over a store holding the reads of
// one partner (created here), with room for n held at once.
func startHeld(t *testing.T, n int, others ...tenant.Partner) (*heldStore, *registry.Component, *nats.Conn) {
	t.Helper()
	ctx := context.Background()
	store := &heldStore{Store: testenv.Pebble(t), held: tenant.NewID(), entered: make(chan struct{}, n), release: make(chan struct{})}
	for _, p := range append(others, tenant.Partner{ID: store.held, Code: "slow", Name: "Slow", Status: tenant.Active}) {
		if err := store.CreatePartner(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	nc, js := testenv.Conn(t, testenv.NATS(t))
	testenv.Provision(t, js)
	c := registry.NewComponent(registry.DefaultConfig(), func() registry.Deps {
		return registry.Deps{NC: nc, JS: js, Store: store, Admin: admintoken.Static(testAdmin)}
	}, zerolog.Nop())
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return store, c, nc
}

// A request the store is slow to answer holds no other, of the same
// operation or another. With as many held as the registry takes at once,
// the next is refused at once (overloaded), and key lookups, on a pool of
// their own, still answer. Stopping answers those in flight before it
// returns, and refuses what comes after.
func TestSlowRequestHoldsNoOther(t *testing.T) {
	ctx := context.Background()
	quick := tenant.Partner{ID: tenant.NewID(), Code: "quick", Name: "Quick", Status: tenant.Active}
	store, c, nc := startHeld(t, registry.InFlight, quick)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			close(store.release)
			c.Stop(ctx)
		}
	})
	call := func(op, partner string) (tenant.Partner, error) {
		ctx, cancel := context.WithTimeout(natsx.WithAdminToken(ctx, testAdmin), 5*time.Second)
		defer cancel()
		var p tenant.Partner
		err := natsx.Call(ctx, nc, subject.Registry(op), api.Request{PartnerID: partner}, &p)
		return p, err
	}
	held := make(chan error, registry.InFlight)
	hold := func() {
		go func() {
			p, err := call(api.PartnersGet, store.held)
			if err == nil && p.Code != "slow" {
				t.Errorf("the held read answered %+v", p)
			}
			held <- err
		}()
		<-store.entered // the slow read is in the store
	}
	hold()

	for _, op := range []string{api.PartnersGet, api.PartnersList} {
		if _, err := call(op, quick.ID); err != nil {
			t.Fatalf("%s behind a held read: %v", op, err)
		}
	}
	select {
	case err := <-held:
		t.Fatalf("the held read answered before it was released: %v", err)
	default:
	}

	// As many held as it takes: the next is refused, lookups answer.
	for range registry.InFlight - 1 {
		hold()
	}
	var ae *apierr.Error
	if _, err := call(api.PartnersGet, quick.ID); !errors.As(err, &ae) || ae.Code != apierr.Overloaded {
		t.Fatalf("a read past %d held: %v, want overloaded", registry.InFlight, err)
	}
	var snap struct {
		Version int64 `json:"version"`
	}
	if err := natsx.Call(natsx.WithAdminToken(ctx, testAdmin), nc, subject.Registry(api.AuthPartner), api.Request{PartnerID: quick.ID}, &snap); err != nil {
		t.Fatalf("a partner lookup with every other turn taken: %v", err)
	}

	// Stopping waits for the held reads, which then answer.
	stopDone := make(chan error, 1)
	go func() { stopDone <- c.Stop(ctx) }()
	stopped = true
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := call(api.PartnersGet, quick.ID)
		if err != nil && (!errors.As(err, &ae) || ae.Code != apierr.Overloaded) {
			break // refused or unanswered: the registry is stopping
		}
		if time.Now().After(deadline) {
			t.Fatal("a stopping registry still serves new requests")
		}
	}
	select {
	case err := <-stopDone:
		t.Fatalf("stopped (%v) with a request in flight", err)
	default:
	}
	close(store.release)
	for range registry.InFlight {
		if err := <-held; err != nil {
			t.Fatalf("a read in flight when the registry stopped: %v", err)
		}
	}
	if err := <-stopDone; err != nil {
		t.Fatal(err)
	}
}

// A stop whose budget ends while a request is held returns then, with an
// error, instead of waiting out the request as well.
func TestStopKeepsToItsBudget(t *testing.T) {
	ctx := context.Background()
	store, c, nc := startHeld(t, 1)
	defer close(store.release)
	go func() {
		ctx, cancel := context.WithTimeout(natsx.WithAdminToken(ctx, testAdmin), 30*time.Second)
		defer cancel()
		var p tenant.Partner
		natsx.Call(ctx, nc, subject.Registry(api.PartnersGet), api.Request{PartnerID: store.held}, &p)
	}()
	<-store.entered
	budget, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(budget) }()
	select {
	case err := <-stopped:
		if err == nil {
			t.Fatal("stopped without an error while a request was held")
		}
	case <-time.After(5 * time.Second): // the held request ends at its handler's 10 s
		t.Fatal("a stop with a 100 ms budget still waits for the held request")
	}
}
