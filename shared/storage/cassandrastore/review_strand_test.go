package cassandrastore

import (
	"context"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/tenant"
)

// (From an outside review.) A worker process that stops (scale-down,
// Close) folds its last manifests first, so they never wait for a sweep
// (every process sweeps every sweepEvery too, for one that died).
func TestStoppedWorkerLeavesNoManifests(t *testing.T) {
	running := openStore(t) // a worker process that keeps running
	ctx := context.Background()
	stopping, err := Open(running.cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, subs := tenant.NewID(), []string{tenant.NewID()}
	ts := time.Now().UTC().Add(-10 * time.Minute)
	if _, err := stopping.WriteEvents(ctx, batchOf(p, subs, 100, ts)); err != nil {
		t.Fatal(err)
	}
	stopping.Close() // its last batch, then a graceful stop
	var ttl int
	if err := running.s.Query("SELECT TTL(retention) FROM claims WHERE partner_id = ? AND bucket = ? AND id > '~~' LIMIT 1",
		p, claimBucket("e0")).Scan(&ttl); err != nil {
		t.Fatal(err)
	}
	if n := manifestsAbove(t, running, p); n != 0 {
		t.Errorf("%d manifests unfolded after their writer stopped, with a TTL of %.1f days (retention %.0f days)",
			n, float64(ttl)/86400, running.cfg.Retention.Hours()/24)
	}
}
