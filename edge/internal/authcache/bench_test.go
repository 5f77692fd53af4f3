package authcache_test

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/edge/internal/authcache"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// BenchmarkKeyCheck is the edge's key check from its cache (lookup by key
// id, constant-time secret compare) under a realistic mix: 1,000 keys, a
// few hot (Zipf), every key looked up from the registry once. It reports
// the p99 of one check and the cache hit rate.
func BenchmarkKeyCheck(b *testing.B) {
	ns := testenv.NATS(b)
	nc, _ := testenv.Conn(b, ns)
	const n = 1000
	type key struct{ id, secret string }
	keys := make([]key, n)
	records := map[string]tenant.APIKey{}
	for i := range keys {
		id, plain, hash := tenant.GenerateKey()
		_, secret, _ := tenant.ParseKey(plain)
		keys[i] = key{id, secret}
		records[id] = tenant.APIKey{ID: id, PartnerID: "p", Hash: hash, Status: tenant.KeyActive}
	}
	var asked string // the stub answers the key the benchmark is about to ask for
	stubRegistry(b, nc, func() (any, error) { return records[asked], nil })
	c := authcache.New(nc, time.Hour, zerolog.Nop())
	ctx := context.Background()
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, n-1)
	picks := make([]int, b.N)
	for i := range picks {
		picks[i] = int(zipf.Uint64())
	}
	lat := make([]time.Duration, b.N)
	misses := 0
	seen := map[int]bool{}
	b.ReportAllocs()
	b.ResetTimer()
	for i, p := range picks {
		k := keys[p]
		if !seen[p] {
			seen[p], asked = true, k.id
			misses++
		}
		t0 := time.Now()
		rec, err := c.Key(ctx, k.id, k.secret)
		if err != nil || !tenant.SecretMatches(k.secret, rec.Hash) {
			b.Fatalf("key %d: %v", p, err)
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// Hits only: the first lookup of each key goes to the registry.
	hits := make([]time.Duration, 0, len(lat))
	for _, d := range lat[:len(lat)-min(misses, len(lat))] {
		hits = append(hits, d)
	}
	if len(hits) > 0 {
		b.ReportMetric(float64(hits[len(hits)*99/100].Nanoseconds())/1000, "p99-hit-µs")
	}
	b.ReportMetric(100*float64(b.N-misses)/float64(b.N), "hit-%")
}
