package groupcommit

// Adversarial tests from the review of group commit: requests that give up
// while queued, answers lost or held by the network, a clustered stream,
// server limits below the publisher's. Each runs against real nats-servers;
// a TCP proxy between publisher and server holds or cuts the answers.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/testenv"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Requests whose context ends while they wait for a slot are never
// published, and are never answered as stored.
func TestAdvExpiredWhileQueued(t *testing.T) {
	p, px, st := proxied(t, jetstream.StreamConfig{AllowAtomicPublish: true}, Config{Slots: 1, MinBatch: 1 << 20, MaxBatch: 1000})
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.Run(rctx)
	px.paused.Store(true) // the first request holds the only slot until its answer comes
	first := make(chan []Ack, 1)
	go func() { first <- p.Publish(context.Background(), []*nats.Msg{tmsg("x")}) }()
	waitFor(t, "x stored", func() bool { return streamMsgs(t, st) == 1 })

	const n = 100
	res := make([][]Ack, n)
	cancels := make([]context.CancelFunc, n)
	var wg sync.WaitGroup
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = p.Publish(ctx, []*nats.Msg{tmsg(fmt.Sprint("m", i))}) }()
	}
	waitFor(t, "all queued", func() bool { return len(p.queue) >= n-1 })
	for _, c := range cancels {
		c() // PublishTimeout passed while queued, or the client went away
	}
	wg.Wait()
	px.paused.Store(false)
	if a := <-first; a[0].Err != nil {
		t.Fatal(a[0].Err)
	}
	// Let the group of cancelled requests be committed, then count.
	if a := p.Publish(context.Background(), []*nats.Msg{tmsg("last")}); a[0].Err != nil {
		t.Fatal(a[0].Err)
	}
	for i := range n {
		if res[i][0].Err == nil {
			t.Fatalf("request %d gave up while queued and was answered stored", i)
		}
	}
	if got := streamMsgs(t, st); got != 2 {
		t.Fatalf("stream holds %d messages, want 2 (nothing of the requests that gave up)", got)
	}
}

// The answer a caller gets is its own: the group may still write the
// unit's acks after the caller gave up (run with -race).
func TestAdvAnswerAfterGivingUp(t *testing.T) {
	p, px, _ := proxied(t, jetstream.StreamConfig{AllowAtomicPublish: true}, Config{MinBatch: 1 << 20, MaxBatch: 1000})
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.Run(rctx)
	for k := range 10 {
		px.paused.Store(true)
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan []Ack, 1)
		go func() { got <- p.Publish(ctx, []*nats.Msg{tmsg(fmt.Sprint("a", k))}) }()
		waitFor(t, "published", func() bool { return len(p.slots) == 1 })
		cancel()
		acks := <-got
		if acks[0].Err == nil {
			t.Fatal("a request that gave up was answered stored")
		}
		px.paused.Store(false)
		waitFor(t, "slot free", func() bool { return len(p.slots) == 0 })
	}
}

// ---- a TCP proxy that can hold the server's answers, or cut the link --------

type proxy struct {
	ln     net.Listener
	target string
	paused atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); px.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			px.mu.Lock()
			px.conns = append(px.conns, c, s)
			px.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { // server → client, held while paused
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					for px.paused.Load() {
						time.Sleep(time.Millisecond)
					}
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return px
}

func (px *proxy) url() string { return "nats://" + px.ln.Addr().String() }

func (px *proxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, c := range px.conns {
		c.Close()
	}
	px.conns = nil
}

// env: a server, a direct connection for checks, and a publisher connected
// through a proxy.
func proxied(t *testing.T, sc jetstream.StreamConfig, cfg Config) (*Publisher, *proxy, jetstream.Stream) {
	t.Helper()
	ns := testenv.NATS(t)
	_, js := testenv.Conn(t, ns)
	sc.Name, sc.Subjects = "S", []string{"s.>"}
	if sc.Duplicates == 0 {
		sc.Duplicates = time.Minute
	}
	st, err := js.CreateStream(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(ns.ClientURL())
	px := newProxy(t, u.Host)
	pnc, pjs := testenv.ConnURL(t, px.url(), nats.ReconnectWait(20*time.Millisecond), nats.MaxReconnects(-1))
	_ = pnc.Flush()
	return New(cfg, pnc, pjs), px, st
}

func tmsg(id string) *nats.Msg {
	m := nats.NewMsg("s." + id)
	m.Data = []byte(`{"id":"` + id + `"}`)
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

func streamMsgs(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// 3. The batch waits on its first request's context. When that request
// goes away (client disconnect, or its deadline) after the server committed
// the batch, every other request's events are published again one by one
// and answered duplicate: true, though this batch stored them first.
func TestAdvFirstRequestGone(t *testing.T) {
	p, px, st := proxied(t, jetstream.StreamConfig{AllowAtomicPublish: true}, Config{Slots: 1, MinBatch: 2})
	actx, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ids := []string{"a", "b", "c", "d"}
	res := make([][]Ack, len(ids))
	aGone := make(chan struct{})
	var wg sync.WaitGroup
	for i, id := range ids {
		ctx := context.Background()
		if i == 0 {
			ctx = actx
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = p.Publish(ctx, []*nats.Msg{tmsg(id)})
			if i == 0 {
				close(aGone)
			}
		}()
		waitFor(t, "queued", func() bool { return len(p.queue) == i+1 })
	}
	px.paused.Store(true) // hold the server's answers
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.Run(rctx)
	waitFor(t, "batch stored", func() bool { return streamMsgs(t, st) == 4 })
	cancelA() // request a's client goes away
	<-aGone   // and its Publish has returned
	px.paused.Store(false)
	wg.Wait()
	if n := streamMsgs(t, st); n != 4 {
		t.Fatalf("stream holds %d, want 4", n)
	}
	batches, _, fallbacks := p.Stats()
	t.Logf("acks %+v; batches %d, fallbacks %d", res, batches, fallbacks)
	for i := 1; i < len(ids); i++ {
		if res[i][0].Err == nil && res[i][0].Duplicate {
			t.Errorf("%s: first stored by this very batch, answered duplicate: true", ids[i])
		}
	}
}

// 4. A connection drop after the server stored a one-by-one message: the
// jetstream client fails every pending future with nats.ErrDisconnected on
// RECONNECTING, and the edge's publishErr answers that "unavailable; retry
// later", not "may be stored". Before this change a single event (track)
// went through PublishMsg, a request that waited out the deadline and
// answered Timeout ("the event may be stored").
func TestAdvDisconnectAfterStore(t *testing.T) {
	p, px, st := proxied(t, jetstream.StreamConfig{AllowAtomicPublish: true}, Config{})
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.Run(rctx)
	px.paused.Store(true)
	got := make(chan []Ack, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got <- p.Publish(ctx, []*nats.Msg{tmsg("one")})
	}()
	waitFor(t, "stored", func() bool { return streamMsgs(t, st) == 1 })
	px.cut()
	px.paused.Store(false)
	a := (<-got)[0]
	t.Logf("ack %+v (stream holds %d)", a, streamMsgs(t, st))
	// Stored, so it must not be answered as refused or as never sent: the
	// edge answers anything else "may be stored; retry with the same id".
	var apiErr *jetstream.APIError
	if errors.Is(a.Err, ErrNotSent) || errors.As(a.Err, &apiErr) {
		t.Fatalf("a stored event answered %v: the edge would say it was not stored", a.Err)
	}
}

// 5. A server whose atomic limits are lower than the publisher's: too many
// batches in flight, or batches larger than allowed. Everything must still
// be stored exactly once and answered without error.
func TestAdvServerBatchLimits(t *testing.T) {
	p, px, st := proxied(t, jetstream.StreamConfig{AllowAtomicPublish: true}, Config{Slots: 4, MinBatch: 2, MaxBatch: 2000})
	_ = px
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.Run(rctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 10 {
				msgs := make([]*nats.Msg, 120)
				for i := range msgs {
					msgs[i] = tmsg(fmt.Sprintf("c%d-%d-%d", c, k, i))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				for _, a := range p.Publish(ctx, msgs) {
					if a.Err != nil || a.Duplicate {
						mu.Lock()
						bad++
						mu.Unlock()
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	batches, batched, fallbacks := p.Stats()
	t.Logf("batches %d (%d msgs), fallbacks %d, bad acks %d", batches, batched, fallbacks, bad)
	if n := streamMsgs(t, st); n != 16*10*120 || bad != 0 {
		t.Fatalf("stream holds %d, want %d; %d bad acks", n, 16*10*120, bad)
	}
}

// 6. A server allowing one atomic batch in flight per stream (the limit is
// 50 by default: 25 edges of 2 slots reach it): batches refused with 429
// "too many inflight" fall back. All stored once, none answered duplicate.
func TestAdvTooManyInflight(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, SyncAlways: true}
	opts.JetStreamLimits.MaxBatchInflightPerStream = 1
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	_, js := testenv.Conn(t, ns)
	st, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, AllowAtomicPublish: true, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	var pubs []*Publisher // three edges, each with its own connection
	for range 3 {
		nc, js := testenv.Conn(t, ns)
		p := New(Config{Slots: 2, MinBatch: 2}, nc, js)
		go p.Run(rctx)
		pubs = append(pubs, p)
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for c := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 20 {
				msgs := []*nats.Msg{tmsg(fmt.Sprintf("c%d-%d-a", c, k)), tmsg(fmt.Sprintf("c%d-%d-b", c, k))}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				for _, a := range pubs[c%3].Publish(ctx, msgs) {
					if a.Err != nil || a.Duplicate {
						bad.Add(1)
						t.Logf("bad ack %+v", a)
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, p := range pubs {
		batches, batched, fallbacks := p.Stats()
		t.Logf("batches %d (%d msgs), fallbacks %d", batches, batched, fallbacks)
	}
	if n := streamMsgs(t, st); n != 32*20*2 || bad.Load() != 0 {
		t.Fatalf("stream holds %d, want %d; %d bad acks", n, 32*20*2, bad.Load())
	}
}

// 7. R3 (the production topology): when the batch's wait ends early (its
// first request's client goes away) while the committed batch is still
// being replicated, the one-by-one republish reaches the leader while the
// ids are staged "in process" and is refused 409 "duplicate message id is
// in process": stored events answered with an error (503 at the edge).
func TestAdvClusteredFirstRequestGone(t *testing.T) {
	var servers []*server.Server
	var routes []*url.URL
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
		u, _ := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", ports[len(ports)-1]))
		routes = append(routes, u)
	}
	for i := range 3 {
		opts := &server.Options{ServerName: fmt.Sprint("n", i), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoLog: true, NoSigs: true, SyncAlways: true}
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = "c", "127.0.0.1", ports[i]
		opts.Routes = routes
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		servers = append(servers, ns)
	}
	for i, ns := range servers {
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatalf("server %d not ready: addr %v cluster %v", i, ns.Addr(), ns.ClusterAddr())
		}
	}
	_, js := testenv.Conn(t, servers[0])
	var st jetstream.Stream
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"},
			AllowAtomicPublish: true, Duplicates: time.Minute, Replicas: 3, Storage: jetstream.FileStorage})
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	// Watch for the commit messages on a plain subscription, and cancel the
	// batch's first request the moment one is seen.
	wnc, _ := testenv.Conn(t, servers[0])
	pnc, pjs := testenv.Conn(t, servers[0])
	p := New(Config{Slots: 1, MinBatch: 2}, pnc, pjs)
	var conflicts, dups, oks int
	for round := range 30 {
		actx, cancelA := context.WithCancel(context.Background())
		sub, _ := wnc.Subscribe("s.>", func(m *nats.Msg) {
			if m.Header.Get(hdrBatchCommit) != "" {
				cancelA()
			}
		})
		_ = wnc.Flush()
		ids := make([]string, 20)
		res := make([][]Ack, len(ids))
		var wg sync.WaitGroup
		for i := range ids {
			ids[i] = fmt.Sprintf("r%d-%d", round, i)
			ctx := context.Background()
			if i == 0 {
				ctx = actx
			}
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = p.Publish(ctx, []*nats.Msg{tmsg(ids[i])}) }()
			waitFor(t, "queued", func() bool { return len(p.queue) == i+1 })
		}
		rctx, stop := context.WithCancel(context.Background())
		go p.Run(rctx)
		wg.Wait()
		stop()
		sub.Unsubscribe()
		cancelA()
		for i := 1; i < len(ids); i++ {
			switch a := res[i][0]; {
			case a.Err != nil:
				if conflicts++; conflicts == 1 {
					t.Logf("round %d %s: %v", round, ids[i], a.Err)
				}
			case a.Duplicate:
				dups++
			default:
				oks++
			}
		}
	}
	n := streamMsgs(t, st)
	t.Logf("stream holds %d; errors %d, duplicate %d, plain ok %d", n, conflicts, dups, oks)
	if conflicts > 0 {
		t.Fatalf("%d events the batch stored were answered with an error", conflicts)
	}
}
