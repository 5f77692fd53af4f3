package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsauth"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/provision"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
	"github.com/volcanion/tracking/workers"
)

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster runs three nodes from the repository's nats.conf, in-process.
func startCluster(t *testing.T) (dir string, urls []string) {
	dir = t.TempDir()
	if err := natsauth.Init(dir); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile("../../nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	var routes [3]string
	var client [3]int
	for i := range routes {
		client[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	}
	for i := 0; i < 3; i++ {
		env := map[string]string{
			"NATS_SERVER_NAME": fmt.Sprint("n", i+1), "NATS_LISTEN": fmt.Sprint("127.0.0.1:", client[i]),
			"NATS_HTTP": fmt.Sprint("127.0.0.1:", freePort(t)), "NATS_CLUSTER_LISTEN": strings.TrimPrefix(routes[i], "nats://"),
			"NATS_ROUTE_1": routes[0], "NATS_ROUTE_2": routes[1], "NATS_ROUTE_3": routes[2],
			"NATS_STORE_DIR": filepath.Join(dir, fmt.Sprint("js", i+1)),
		}
		for k, v := range env {
			t.Setenv(k, v)
		}
		opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
		if err != nil {
			t.Fatalf("nats.conf: %v", err)
		}
		opts.NoSigs, opts.NoLog = true, true
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatal("node not ready")
		}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client[i]))
	}
	return dir, urls
}

// violations records the permission errors the server sends a connection.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.seen = append(v.seen, err.Error())
	v.mu.Unlock()
}

func (v *violations) has(t *testing.T, subj string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		for _, s := range v.seen {
			if strings.Contains(s, "Permissions Violation") && strings.Contains(s, subj) {
				v.mu.Unlock()
				return
			}
		}
		v.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the server did not refuse %s (errors: %v)", subj, v.seen)
}

func connectAs(t *testing.T, urls []string, creds string, v *violations) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts, err := natsx.Credentials(creds) // the user's own inbox
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		opts = append(opts, nats.ErrorHandler(v.handler))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return nc, js
}

// TestNATSConfig runs the 3-node cluster of nats.conf and checks every
// role's permissions, and that a partner's internal service can publish only
// to its own partner's subjects.
func TestNATSConfig(t *testing.T) {
	dir, urls := startCluster(t)
	ctx := context.Background()
	creds := func(role string) string { return filepath.Join(dir, role+".creds") }

	// The provisioning step, with the admin role, creates the streams with
	// 3 replicas once the cluster has a leader.
	_, ajs := connectAs(t, urls, creds("admin"), nil)
	testenv.Provision(t, ajs, func(c *provision.Config) { c.Replicas = 3 })

	// Workers find them as they need them.
	wv := &violations{}
	_, wjs := connectAs(t, urls, creds("workers"), wv)
	cfg := workers.DefaultConfig()
	cfg.MaxWait = 50 * time.Millisecond
	w := workers.New(cfg, wjs, testenv.Pebble(t), nil, zerolog.Nop())
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := w.Consumer(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers could not find their stream and consumer: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if info, err := wjs.Stream(ctx, subject.EventsStream); err != nil || info.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("EVENTS stream: %v", err)
	}

	// The registry serves over its own credentials.
	rnc, rjs := connectAs(t, urls, creds("registry"), nil)
	const admin = "natsconf-test-admin-token"
	rsvc, err := registry.New(testenv.Pebble(t), rjs, zerolog.Nop()).WithAdminTokens(admintoken.Static(admin)).Start(ctx, rnc)
	if err != nil {
		t.Fatal(err)
	}
	defer rsvc.Stop()

	// The edge calls the registry for an admin, forwarding the admin's
	// token, and publishes events. Its credential alone creates nothing.
	ev := &violations{}
	enc, ejs := connectAs(t, urls, creds("edge"), ev)
	// The registry's subscriptions reach the other nodes over the routes a
	// moment after it starts: wait until the edge's node knows them.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := natsx.Call(ctx, enc, subject.Registry(api.Health), api.Request{}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge never reached the registry: %v", err)
		}
	}
	var p tenant.Partner
	code, name := "acme", "Acme"
	if err := natsx.Call(ctx, enc, subject.Registry(api.PartnersCreate), api.Request{Code: &code, Name: &name}, &p); !apierr.Is(err, apierr.AdminRequired) {
		t.Fatalf("edge -> registry without the admin's token: %v", err)
	}
	if err := natsx.Call(natsx.WithAdminToken(ctx, admin), enc, subject.Registry(api.PartnersCreate), api.Request{Code: &code, Name: &name}, &p); err != nil {
		t.Fatalf("edge -> registry: %v", err)
	}
	publish := func(js jetstream.JetStream, partnerID, id string) error {
		e := event.Event{ID: id, PartnerID: partnerID, SubSystemID: tenant.NewID(), EventType: "t", Timestamp: time.Now()}
		data, _ := json.Marshal(e)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, subject.Events(e.PartnerID, e.SubSystemID), data)
		return err
	}
	if err := publish(ejs, p.ID, "from-edge"); err != nil {
		t.Fatalf("edge publish: %v", err)
	}
	// The edge may not forge registry changes.
	enc.Publish(subject.RegistryChanges, []byte("{}"))
	ev.has(t, subject.RegistryChanges)

	// A partner's internal service: its own subjects only.
	pcreds, err := natsauth.PartnerCreds(dir, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	pfile := filepath.Join(dir, "partner.creds")
	os.WriteFile(pfile, pcreds, 0o600)
	pv := &violations{}
	pnc, pjs := connectAs(t, urls, pfile, pv)
	if err := publish(pjs, p.ID, "from-partner"); err != nil {
		t.Fatalf("partner publish to its own subject: %v", err)
	}
	other := tenant.NewID()
	if err := publish(pjs, other, "forged"); err == nil {
		t.Fatal("a partner service published to another partner's subject")
	}
	pv.has(t, subject.EventsPrefix+other)
	// Even with an admin's token the server refuses the subject itself.
	if err := natsx.Call(natsx.WithAdminToken(ctx, admin), pnc, subject.Registry(api.PartnersList), api.Request{}, nil); err == nil {
		t.Fatal("a partner service called the registry")
	}

	// The reporter answers, and asks the registry's auth.key about keys
	// edges forward, but publishes nothing else: no event, no other
	// registry operation. (Workers may publish events: replaying a dead
	// letter does.)
	vv := &violations{}
	repnc, repjs := connectAs(t, urls, creds("reporter"), vv)
	// It follows registry changes (renames bump its cache), and cannot
	// write one.
	follow, err := repjs.OrderedConsumer(ctx, subject.RegistryChangesStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err == nil {
		_, err = follow.Fetch(1, jetstream.FetchMaxWait(time.Second)) // creates the consumer on the server
	}
	if err != nil {
		t.Fatalf("the reporter cannot follow registry changes: %v", err)
	}
	repnc.Publish(subject.RegistryChanges, []byte("{}"))
	vv.has(t, subject.RegistryChanges)
	repnc.Publish(subject.Events(p.ID, "x"), []byte("{}"))
	vv.has(t, subject.EventsPrefix+p.ID)
	repnc.Publish(subject.Registry(api.KeysCreate), []byte("{}"))
	vv.has(t, subject.Registry(api.KeysCreate))
	wnc, _ := connectAs(t, urls, creds("workers"), wv)
	wnc.Publish(subject.RegistryChanges, []byte("{}"))
	wv.has(t, subject.RegistryChanges)

	// Exactly the two permitted events are in the stream.
	info, err := ejs.Stream(ctx, subject.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("EVENTS holds %d messages, want 2", n)
	}
}
