package reporter

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/storage/pebblestore"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// serveOverNATS starts s on an embedded NATS server, stopped with the
// test, and returns a client's connection to it.
func serveOverNATS(t *testing.T, s *Service) *nats.Conn {
	t.Helper()
	ns := testenv.NATS(t)
	nc, _ := testenv.Conn(t, ns)
	svc, err := s.Start(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	if err := nc.Flush(); err != nil { // the server has the subscriptions before any call
		t.Fatal(err)
	}
	cnc, _ := testenv.Conn(t, ns)
	return cnc
}

// stuckRetention holds the partner reports of one partner inside their
// computation until released.
type stuckRetention struct {
	*pebblestore.Store
	stuck   string
	entered chan struct{}
	release chan struct{}
}

func (s stuckRetention) Retention(p tenant.Partner) time.Duration {
	if p.ID == s.stuck {
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-time.After(20 * time.Second): // a failed test's bound, not a wait
		}
	}
	return s.Store.Retention(p)
}

// Over NATS, a cached report answers while another report of the same
// endpoint is still computing on the same reporter: micro serves an
// endpoint on one goroutine, and without the reporter's pool the cached
// answer waited behind the computation (here: until released, after it).
func TestCachedAnswerDoesNotWaitBehindAComputation(t *testing.T) {
	ctx := context.Background()
	pb, p := storeWithPartner(t)
	other := tenant.Partner{ID: tenant.NewID(), Code: "o", Name: "O", Status: tenant.Active}
	if err := pb.CreatePartner(ctx, other); err != nil {
		t.Fatal(err)
	}
	store := stuckRetention{Store: pb, stuck: other.ID, entered: make(chan struct{}, 1), release: make(chan struct{})}
	const tok = "pool-test-admin-token-0123456789abcdef0123"
	s := New(store, zerolog.Nop()).WithAdminTokens(admintoken.Static(tok)).WithMaxConcurrent(4).
		WithCache(rcache.NewLocal(1<<20), time.Minute)
	cnc := serveOverNATS(t, s)
	call := func(timeout time.Duration, q report.PartnerQuery) (report.PartnerReport, error) {
		c, cancel := context.WithTimeout(natsx.WithAdminToken(ctx, tok), timeout)
		defer cancel()
		var rep report.PartnerReport
		err := natsx.Call(c, cnc, subject.Report(reportapi.Partner), q, &rep)
		return rep, err
	}
	now := time.Now().UTC()
	q := report.PartnerQuery{PartnerID: p.ID, From: now.AddDate(0, 0, -7), To: now}
	if _, err := call(10*time.Second, q); err != nil { // computed, and cached
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := call(20*time.Second, report.PartnerQuery{PartnerID: other.ID, From: q.From, To: q.To})
		slow <- err
	}()
	select { // the other partner's report is computing
	case <-store.entered:
	case err := <-slow:
		t.Fatalf("the other partner's report ended before it computed: %v", err)
	}
	rep, err := call(5*time.Second, q)
	if err != nil || rep.CachedAt == nil {
		close(store.release)
		t.Fatalf("a cached report while another computes: cachedAt %v, %v; want it from the cache at once", rep.CachedAt, err)
	}
	close(store.release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// countedRetention counts the partner reports computed (each reads the
// partner's retention once).
type countedRetention struct {
	*pebblestore.Store
	n atomic.Int32
}

func (s *countedRetention) Retention(p tenant.Partner) time.Duration {
	s.n.Add(1)
	return s.Store.Retention(p)
}

// A report that cannot get a turn before its caller stops waiting (the
// caller's time left travels with the request) gives up then, and is never
// computed: no turn goes to an answer nobody reads.
func TestNoTurnPastTheCallersDeadline(t *testing.T) {
	ctx := context.Background()
	pb, p := storeWithPartner(t)
	store := &countedRetention{Store: pb}
	const tok = "pool-test-admin-token-0123456789abcdef0123"
	s := New(store, zerolog.Nop()).WithAdminTokens(admintoken.Static(tok)).WithMaxConcurrent(1)
	cnc := serveOverNATS(t, s)
	held, err := s.turn(ctx) // the one turn
	if err != nil {
		t.Fatal(err)
	}
	busy := testutil.ToFloat64(mBusy)
	c, cancel := context.WithTimeout(natsx.WithAdminToken(ctx, tok), 300*time.Millisecond)
	defer cancel()
	now := time.Now().UTC()
	var rep report.PartnerReport
	err = natsx.Call(c, cnc, subject.Report(reportapi.Partner), report.PartnerQuery{PartnerID: p.ID, From: now.AddDate(0, 0, -1), To: now}, &rep)
	if ae := apierr.From(err); ae.Code != apierr.Timeout {
		t.Fatalf("a report with the one turn held: %v, want timeout", err)
	}
	// The reporter gives up at the caller's deadline, not its own 30 s.
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(mBusy) == busy {
		if time.Now().After(deadline) {
			t.Fatal("the reporter still waits for a turn for a caller that gave up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	held()
	if n := store.n.Load(); n != 0 {
		t.Fatalf("%d reports computed for a caller that gave up", n)
	}
}
