package authcache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge/internal/authcache"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// A stand-in registry on a real NATS server, counting lookups.
func TestInvalidation(t *testing.T) {
	ns := testenv.NATS(t)
	nc, js := testenv.Conn(t, ns)
	ctx := context.Background()
	testenv.Provision(t, js)
	var status atomic.Value
	status.Store(tenant.KeyActive)
	lookups, _ := stubRegistry(t, nc, func() (any, error) {
		return tenant.APIKey{ID: "aaaaaaaaaaaaa", PartnerID: "p", Status: status.Load().(tenant.KeyStatus)}, nil
	})
	c := authcache.New(nc, time.Minute, zerolog.Nop())
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Follow(fctx, js); err != nil {
		t.Fatal(err)
	}
	get := func() tenant.APIKey {
		k, err := c.Key(ctx, "aaaaaaaaaaaaa", "secret")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	waitLookups := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			get()
			if int(lookups.Load()) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d lookups, want %d", lookups.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	get()
	get()
	if lookups.Load() != 1 {
		t.Fatalf("cached key looked up %d times", lookups.Load())
	}
	// A change about this key drops it.
	status.Store(tenant.KeyRevoked)
	change := func(ch api.Change) {
		data, _ := json.Marshal(ch)
		if _, err := js.Publish(ctx, subject.RegistryChanges, data); err != nil {
			t.Fatal(err)
		}
	}
	change(api.Change{Kind: api.KindKey, KeyID: "aaaaaaaaaaaaa", PartnerID: "p"})
	waitLookups(2)
	if get().Status != tenant.KeyRevoked {
		t.Fatal("stale key after change")
	}
	// A change about something else keeps it.
	change(api.Change{Kind: api.KindKey, KeyID: "bbbbbbbbbbbbb", PartnerID: "q"})
	time.Sleep(100 * time.Millisecond)
	get()
	if lookups.Load() != 2 {
		t.Fatalf("unrelated change dropped the entry (%d lookups)", lookups.Load())
	}
	// A gap in the change sequence drops everything: simulate a change the
	// edge never saw by deleting it from the stream before delivery is possible.
	stream, _ := js.Stream(ctx, subject.RegistryChangesStream)
	cancel() // stop following
	change(api.Change{Kind: api.KindKey, KeyID: "ccccccccccccc", PartnerID: "r"})
	info, _ := stream.Info(ctx)
	if err := stream.DeleteMsg(ctx, info.State.LastSeq); err != nil {
		t.Fatal(err)
	}
	// Follow again, as after a restart of the follower: the cache remembers
	// the last sequence it applied.
	f2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	if err := c.Follow(f2, js); err != nil {
		t.Fatal(err)
	}
	change(api.Change{Kind: api.KindKey, KeyID: "ddddddddddddd", PartnerID: "s"}) // seq last+2: a gap
	waitLookups(3)
}

// With no word from the registry past the bound, cached entries are not
// trusted: every lookup asks the registry, and fails when it cannot answer.
func TestStaleBound(t *testing.T) {
	ns := testenv.NATS(t)
	nc, js := testenv.Conn(t, ns)
	ctx := context.Background()
	testenv.Provision(t, js)
	lookups, stopRegistry := stubRegistry(t, nc, activeKey)
	followed := time.Now() // before the cache exists: its clock starts after
	c := authcache.New(nc, time.Minute, zerolog.Nop()).WithStaleBound(300 * time.Millisecond)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Follow(fctx, js); err != nil {
		t.Fatal(err)
	}
	if c.Stale() {
		t.Fatal("stale as soon as it follows")
	}
	heartbeat := func() {
		data, _ := json.Marshal(api.Change{Kind: api.KindHeartbeat})
		js.Publish(ctx, subject.RegistryChanges, data)
	}
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	if lookups.Load() != 1 {
		t.Fatalf("fresh cache: %d lookups", lookups.Load())
	}
	// waitStale waits for the cache to stop trusting itself, the bound
	// after its last word (which came after quiet): not before, and not
	// much later.
	const bound = 300 * time.Millisecond
	waitStale := func(quiet time.Time) {
		t.Helper()
		for !c.Stale() {
			if time.Since(quiet) > bound+2*time.Second {
				t.Fatalf("not stale %s after the last word, with a bound of %s", time.Since(quiet), bound)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if since := time.Since(quiet); since < bound {
			t.Fatalf("stale %s after the last word, before the bound of %s", since, bound)
		}
	}
	waitStale(followed) // silence past the bound
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	if lookups.Load() != 3 {
		t.Fatalf("stale cache was trusted: %d lookups", lookups.Load())
	}
	beat := time.Now()
	heartbeat()
	deadline := time.Now().Add(2 * time.Second)
	for c.Stale() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.Stale() {
		t.Fatal("a heartbeat did not restore trust")
	}
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	if lookups.Load() != 3 {
		// The stale-time lookups fetched fresh records; trusted again, they serve.
		t.Fatalf("after the heartbeat: %d lookups, want the cache trusted again", lookups.Load())
	}
	// Stale and the registry gone: refuse rather than trust the cache.
	stopRegistry()
	waitStale(beat)
	if _, err := c.Key(ctx, "aaaaaaaaaaaaa", "secret"); err == nil {
		t.Fatal("a stale cache answered while the registry was unreachable")
	}
}

// After a reconnect to NATS, changes may have been missed: the cache is dropped.
func TestReconnectFlushes(t *testing.T) {
	ns := testenv.NATS(t)
	nc, _ := testenv.Conn(t, ns)
	lookups, _ := stubRegistry(t, nc, activeKey)
	c := authcache.New(nc, time.Minute, zerolog.Nop())
	ctx := context.Background()
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	c.Reconnected()
	c.Key(ctx, "aaaaaaaaaaaaa", "secret")
	if lookups.Load() != 2 {
		t.Fatalf("%d lookups: the reconnect did not drop the cache", lookups.Load())
	}
}

// Unknown key ids are cached negatively, and expired entries are deleted,
// so a flood of random ids does not grow the cache for ever.
func TestNegativeEntriesExpire(t *testing.T) {
	ns := testenv.NATS(t)
	nc, _ := testenv.Conn(t, ns)
	lookups, _ := stubRegistry(t, nc, func() (any, error) { return nil, apierr.New(apierr.APIKeyNotFound, "API key not found") })
	c := authcache.New(nc, 100*time.Millisecond, zerolog.Nop())
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := c.Key(ctx, fmt.Sprintf("bad%010d", i), "secret"); !apierr.Is(err, apierr.APIKeyInvalid) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	c.Key(ctx, "bad0000000000", "secret") // cached negatively: no second lookup
	if lookups.Load() != 50 {
		t.Fatalf("%d lookups for 50 unknown ids asked twice", lookups.Load())
	}
	time.Sleep(150 * time.Millisecond)
	c.Key(ctx, "another000000", "secret") // a store after the TTL sweeps the expired ones
	if keys, _ := c.Len(); keys != 1 {
		t.Fatalf("%d entries left after expiry, want 1", keys)
	}
}

// A secret the registry refuses (it does not match the key) is not cached:
// nobody can make a valid key look missing by presenting it with a wrong one.
func TestWrongSecretNotCached(t *testing.T) {
	nc, _ := testenv.Conn(t, testenv.NATS(t))
	var refuse atomic.Bool
	refuse.Store(true)
	lookups, _ := stubRegistry(t, nc, func() (any, error) {
		if refuse.Load() {
			return nil, apierr.New(apierr.APIKeyInvalid, "invalid API key")
		}
		return activeKey()
	})
	c := authcache.New(nc, time.Minute, zerolog.Nop())
	ctx := context.Background()
	if _, err := c.Key(ctx, "aaaaaaaaaaaaa", "wrong"); !apierr.Is(err, apierr.APIKeyInvalid) {
		t.Fatalf("wrong secret: %v", err)
	}
	refuse.Store(false)
	if k, err := c.Key(ctx, "aaaaaaaaaaaaa", "right"); err != nil || k.ID != "aaaaaaaaaaaaa" || lookups.Load() != 2 {
		t.Fatalf("the right secret after a wrong one: %v %+v (%d lookups)", err, k, lookups.Load())
	}
}

// stubRegistry serves auth.key on nc with answer, counting the lookups.
func stubRegistry(t testing.TB, nc *nats.Conn, answer func() (any, error)) (lookups *atomic.Int32, stop func()) {
	t.Helper()
	lookups = &atomic.Int32{}
	svc, err := micro.AddService(nc, micro.Config{Name: "registry", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	err = svc.AddEndpoint("authkey", natsx.Handler(zerolog.Nop(), "t", api.AuthKey, time.Second, func(context.Context, []byte) (any, error) {
		lookups.Add(1)
		return answer()
	}), micro.WithEndpointSubject(subject.Registry(api.AuthKey)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return lookups, func() { svc.Stop() }
}

func activeKey() (any, error) {
	return tenant.APIKey{ID: "aaaaaaaaaaaaa", PartnerID: "p", Status: tenant.KeyActive}, nil
}

// With a silent-registry grace, a key this edge holds is served while the
// registry cannot answer, until the grace ends; a key it never held is not.
// With none (TestStaleBound), the same lookup fails at once.
func TestSilentGrace(t *testing.T) {
	ns := testenv.NATS(t)
	nc, js := testenv.Conn(t, ns)
	ctx := context.Background()
	testenv.Provision(t, js)
	_, stopRegistry := stubRegistry(t, nc, activeKey)
	const bound, grace = 300 * time.Millisecond, 700 * time.Millisecond
	start := time.Now() // before the cache last heard the registry
	c := authcache.New(nc, time.Minute, zerolog.Nop()).WithStaleBound(bound).WithSilentGrace(grace)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Follow(fctx, js); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Key(ctx, "aaaaaaaaaaaaa", "secret"); err != nil {
		t.Fatal(err)
	}
	stopRegistry()
	silentSince := time.Now()
	for !c.Stale() {
		if time.Since(silentSince) > 5*time.Second {
			t.Fatal("never stale")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Key(ctx, "bbbbbbbbbbbbb", "secret"); err == nil {
		t.Fatal("a key never held was served while the registry was silent")
	}
	if k, err := c.Key(ctx, "aaaaaaaaaaaaa", "secret"); err != nil || k.ID != "aaaaaaaaaaaaa" {
		t.Fatalf("a held key in the grace: %v", err)
	}
	// Past the bound and the grace: refused.
	for {
		_, err := c.Key(ctx, "aaaaaaaaaaaaa", "secret")
		if err != nil {
			if code := apierr.From(err).Code; code != apierr.Unavailable && code != apierr.Timeout {
				t.Fatalf("after the grace: %v, want the registry's silence", err)
			}
			break
		}
		if time.Since(silentSince) > bound+grace+5*time.Second {
			t.Fatal("a held key was served long after the grace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(start); since < bound+grace {
		t.Fatalf("refused after %s, before the bound and grace (%s)", since, bound+grace)
	}
}
