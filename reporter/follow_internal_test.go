package reporter

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// A reporter started before the registry's stream exists follows it once it
// does (a rename then refreshes cached answers, not only after a restart),
// bumps the partner and sub-system of a change but nothing for a key's or
// a heartbeat, and stops when told.
func TestFollowsOnceTheStreamExists(t *testing.T) {
	was := followRetry
	followRetry = 20 * time.Millisecond
	t.Cleanup(func() { followRetry = was })
	ns := testenv.NATS(t)
	_, js := testenv.Conn(t, ns)
	cache := rcache.NewLocal(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s := New(nil, zerolog.Nop()).WithCache(cache, time.Minute)
	go func() { defer close(done); keepFollowing(ctx, js, s.changed, zerolog.Nop()) }()

	testenv.Provision(t, js) // the stream, after the reporter started
	gen := func(id string) int64 {
		g, _, _, err := cache.GetGenerational(ctx, id, "none")
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	publish := func(ch api.Change) {
		b, _ := json.Marshal(ch)
		if _, err := js.Publish(ctx, subject.RegistryChanges, b); err != nil {
			t.Fatal(err)
		}
	}
	p, sub, other := tenant.NewID(), tenant.NewID(), tenant.NewID()
	for deadline := time.Now().Add(10 * time.Second); gen(sub) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no bump 10 s after the stream was made")
		}
		publish(api.Change{Kind: api.KindSubSystem, Op: "update", PartnerID: p, SubSystemID: sub, At: time.Now()})
		time.Sleep(followRetry) // a new change each try: the follower only sees those after it starts
	}
	if gen(p) == 0 {
		t.Fatal("a sub-system's change did not bump its partner (its reports list the sub-system's name)")
	}
	// A key's change and a heartbeat name nothing an answer holds; the
	// partner change after them shows they were read.
	publish(api.Change{Kind: api.KindKey, Op: "update", PartnerID: other, KeyID: "k", At: time.Now()})
	publish(api.Change{Kind: api.KindHeartbeat, At: time.Now()})
	p2 := tenant.NewID()
	publish(api.Change{Kind: api.KindPartner, Op: "update", PartnerID: p2, At: time.Now()})
	for deadline := time.Now().Add(10 * time.Second); gen(p2) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a partner's change was not followed")
		}
	}
	if gen(other) != 0 {
		t.Fatal("a key's change bumped its partner")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("following did not stop")
	}
}
