package allinone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// TestRevokeReachesEveryEdge: with Redis between the registry and two
// edges, revokes are interleaved with cache fills (both edges using the key
// non-stop, and direct registry fills of Redis). After every revoke answers,
// every edge refuses the key within 1 s, every time.
//
// "refresh lost": the registry cannot write Redis at all (its Redis address
// is dead) while the edges read a Redis that a fill left holding the
// pre-revoke record; the edges must refuse anyway.
func TestRevokeReachesEveryEdge(t *testing.T) {
	url := os.Getenv("VT_REDIS_URL")
	if url == "" {
		t.Skip("VT_REDIS_URL is not set; `make test` starts Redis and sets it")
	}
	t.Run("fills", func(t *testing.T) { revokeRounds(t, url, false) })
	t.Run("refresh lost", func(t *testing.T) { revokeRounds(t, url, true) })
}

func revokeRounds(t *testing.T, url string, lost bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := "test:" + tenant.NewID() + ":"
	shared, err := rcache.Open(ctx, url, prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	regShared := shared
	if lost {
		dead, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := dead.Addr().String()
		dead.Close() // nothing listens there now
		if regShared, err = rcache.New("redis://"+addr, prefix); err != nil {
			t.Fatal(err)
		}
		defer regShared.Close()
	}
	ns := testenv.NATS(t)
	nc, js := testenv.Conn(t, ns)
	testenv.Provision(t, js)
	const admin = "revoke-race-admin-token"
	reg, err := registry.New(testenv.Pebble(t), js, zerolog.Nop()).WithCache(regShared).WithAdminTokens(admintoken.Static(admin)).Start(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()

	var edges []*sys
	for i := 0; i < 2; i++ {
		enc, ejs := testenv.Conn(t, ns)
		cfg := edge.DefaultConfig()
		cfg.AdminTokens, cfg.Shared, cfg.RateLimit = []string{admin}, shared, 0
		srv, err := edge.New(cfg, enc, ejs, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ctx, ln)
		edges = append(edges, &sys{t: t, base: "http://" + ln.Addr().String() + "/api/v1", admin: admin})
	}
	s := edges[0]
	partnerID, _, _ := s.tenant("revokers", "web")
	body, _ := json.Marshal(ev("web", "x"))
	track := func(base, key string) int {
		req, _ := http.NewRequest("POST", base+"/tracking", bytes.NewReader(body))
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("Content-Type", "application/json")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		r.Body.Close()
		return r.StatusCode
	}

	const rounds = 60
	var worst time.Duration
	var lastKey string
	for round := 0; round < rounds; round++ {
		k := s.key(partnerID, nil)
		lastKey = k.ID
		for _, e := range edges {
			if st := track(e.base, k.APIKey); st != 202 {
				t.Fatalf("round %d: fresh key answered %d", round, st)
			}
		}
		_, secret, _ := tenant.ParseKey(k.APIKey)
		authKey := func(out *tenant.APIKey) error { // what an edge's fill asks
			sctx := natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, secret))
			return natsx.Call(sctx, nc, subject.Registry(api.AuthKey), api.Request{KeyID: k.ID, Secret: secret}, out)
		}
		var before tenant.APIKey // the record as a fill may have read it
		if err := authKey(&before); err != nil {
			t.Fatal(err)
		}
		if lost { // what a fill before the revoke left in Redis
			if _, err := shared.SetVersioned(ctx, rcache.KeyOfAPIKey(k.ID), before.Version, before, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		// Fillers: both edges use the key, and the registry fills Redis,
		// without pause, across the revoke.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var uses atomic.Int64
		for _, e := range edges {
			wg.Add(1)
			go func(base string) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					track(base, k.APIKey)
					uses.Add(1)
				}
			}(e.base)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var k2 tenant.APIKey
				authKey(&k2)
			}
		}()
		edges[round%2].must(200, "DELETE", "/partners/"+partnerID+"/api-keys/"+k.ID, "admin", nil, nil)
		revoked := time.Now()
		for i, e := range edges {
			for {
				st := track(e.base, k.APIKey)
				if st == 401 {
					break
				}
				if time.Since(revoked) > time.Second {
					t.Fatalf("round %d: edge %d still answers %d to a key revoked %s ago", round, i, st, time.Since(revoked))
				}
			}
		}
		if d := time.Since(revoked); d > worst {
			worst = d
		}
		close(stop)
		wg.Wait()
		// And it stays refused, on every edge, from Redis or not.
		for i, e := range edges {
			for j := 0; j < 3; j++ {
				if st := track(e.base, k.APIKey); st != 401 {
					t.Fatalf("round %d: edge %d accepted the revoked key again: %d", round, i, st)
				}
			}
		}
		if uses.Load() == 0 {
			t.Fatalf("round %d: the fillers never ran", round)
		}
	}
	if lost {
		var inRedis tenant.APIKey
		if _, ok, _ := shared.GetVersioned(ctx, rcache.KeyOfAPIKey(lastKey), &inRedis); !ok || inRedis.Status != tenant.KeyActive {
			t.Fatalf("the test did not keep a stale record in Redis: %v %+v", ok, inRedis.Status)
		}
	}
	t.Logf("%d revokes under fills: every edge refused within %s (worst)", rounds, worst)
}
