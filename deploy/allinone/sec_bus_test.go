package allinone_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/deploy/allinone"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/natsauth"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// TestSecBusPortClosedByDefault: the all-in-one's NATS has no client port
// unless -nats-listen opens one; its services connect in-process.
func TestSecBusPortClosedByDefault(t *testing.T) {
	def := allinone.DefaultConfig().NATS
	if def.Listen() != "" {
		t.Fatalf("the default config opens NATS on %q", def.Listen())
	}
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS = def })
	if u := s.app.NATSURL(); u != "" {
		t.Fatalf("NATS listens on %s by default", u)
	}
	s.tenant("closed", "web") // and the system works over in-process connections
}

// TestSecBusPortNeedsCredentials: an opened port admits only users of the
// credentials generated into the data dir (files only their owner reads); a
// partner's internal service gets credentials for its own events only.
func TestSecBusPortNeedsCredentials(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	url := s.app.NATSURL()
	if url == "" {
		t.Fatal("-nats-listen did not open a port")
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("refused for another reason: %v", err)
	}
	// Credentials of another installation (another operator) are refused too.
	foreign := t.TempDir()
	if err := natsauth.Init(foreign); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(foreign, "admin.creds"))); err == nil {
		nc.Close()
		t.Fatal("connected with another installation's admin credentials")
	}
	// The data dir's own: a directory and files only the owner may read.
	if fi, err := os.Stat(s.app.AuthDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v", s.app.AuthDir, fi.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(s.app.AuthDir, "*"))
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", f, fi.Mode().Perm())
		}
	}
	for _, role := range natsauth.Roles {
		nc, err := nats.Connect(url, nats.UserCredentials(s.app.Creds(role)))
		if err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
		nc.Close()
	}

	// An internal service of one partner: its own events, nothing else.
	p, subs, _ := s.tenant("internal", "billing")
	pcreds, err := natsauth.PartnerCreds(s.app.AuthDir, p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "billing.creds")
	os.WriteFile(file, pcreds, 0o600)
	v := &violations{}
	nc, js := connectAs(t, []string{url}, file, v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	good := `{"id":"inv-1","partnerId":"` + p + `","subSystemId":"` + subs["billing"] + `","eventType":"invoice_paid","timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`
	if _, err := js.Publish(ctx, subject.Events(p, subs["billing"]), []byte(good)); err != nil {
		t.Fatalf("a partner's service publishing its own event: %v", err)
	}
	s.waitTotal(subs["billing"], 1)
	other := tenant.NewID()
	nc.Publish(subject.Events(other, subs["billing"]), []byte(good))
	v.has(t, subject.EventsPrefix+other)
	// Even with the admin token in hand it cannot reach the registry: the
	// server refuses the subject.
	cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer ccancel()
	if err := natsx.Call(natsx.WithAdminToken(cctx, s.admin), nc, subject.Registry(api.KeysCreate), api.Request{PartnerID: p}, nil); err == nil {
		t.Fatal("a partner's service called the registry")
	}
	v.has(t, subject.Registry(api.KeysCreate))
}

// TestSecBusEdgeRoleRefused: with the edge's NATS credential (the role the
// production edges use) and no admin credential, every registry operation
// that creates, changes or lists anything, and every dead-letter operation,
// is refused by the service itself; a wrong admin token too. Nothing changes.
func TestSecBusEdgeRoleRefused(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	p, subs, key := s.tenant("target", "web")
	var keys []struct{ ID string }
	s.must(200, "GET", "/partners/"+p+"/api-keys", "admin", nil, &keys)
	v := &violations{}
	nc, _ := connectAs(t, []string{s.app.NATSURL()}, s.app.Creds("edge"), v)
	ctx := context.Background()

	code, name, status := "stolen", "Stolen", "Inactive"
	req := api.Request{PartnerID: p, SubSystemID: subs["web"], KeyID: keys[0].ID, Code: &code, Name: &name, Status: &status}
	ops := []string{
		api.PartnersCreate, api.PartnersUpdate, api.PartnersDelete, api.PartnersToggle,
		api.SubSystemsCreate, api.SubSystemsUpdate, api.SubSystemsDelete, api.SubSystemsToggle,
		api.KeysCreate, api.KeysUpdate, api.KeysRevoke, api.KeysRegenerate,
		// Admin reads: listing and looking up by code need the admin too.
		api.PartnersList, api.PartnersByCode, api.SubSystemsGet, api.SubSystemsByCode, api.SubSystemsAll, api.KeysList,
	}
	for _, op := range ops {
		for tok, want := range map[string]apierr.Code{"": apierr.AdminRequired, "not-the-admin-token-0123": apierr.AdminInvalid} {
			err := natsx.Call(natsx.WithAdminToken(ctx, tok), nc, subject.Registry(op), req, nil)
			if !apierr.Is(err, want) {
				t.Errorf("registry %s as the edge role, token %q: %v, want %s", op, tok, err, want)
			}
		}
	}
	for _, op := range []string{dlqapi.List, dlqapi.Replay, dlqapi.Discard} {
		err := natsx.Call(ctx, nc, dlqapi.Subject(op), dlqapi.Request{PartnerID: p, Seq: 1}, nil)
		if !apierr.Is(err, apierr.AdminRequired) {
			t.Errorf("dead letters %s as the edge role: %v", op, err)
		}
	}
	// A key's record (hash, signing secret) only for a holder of the key.
	for _, secret := range []string{"", "not-the-secret"} {
		var k tenant.APIKey
		err := natsx.Call(natsx.WithReplyKey(ctx, natsx.ReplyKey(natsx.PurposeAuthKey, secret)), nc, subject.Registry(api.AuthKey), api.Request{KeyID: keys[0].ID, Secret: secret}, &k)
		if !apierr.Is(err, apierr.APIKeyInvalid) || k.Hash != nil || k.SigningSecret != nil {
			t.Errorf("auth.key of a known key id with secret %q: %v %+v", secret, err, k)
		}
	}
	// Nor can it listen in on the forwarded admin tokens of real edges.
	if _, err := nc.SubscribeSync(subject.RegistryPrefix + ".>"); err == nil {
		v.has(t, subject.RegistryPrefix+".>")
	}

	// Nothing changed: the partner and its sub-system are as they were,
	// the key still works, and no partner "stolen" exists.
	var got tenant.Partner
	s.must(200, "GET", "/partners/"+p, "admin", nil, &got)
	if got.Code != "target" || got.Status != tenant.Active {
		t.Fatalf("partner after the refused calls: %+v", got)
	}
	s.must(200, "GET", "/partners/"+p+"/sub-systems/"+subs["web"], "admin", nil, nil)
	expectCode(t, s.do("GET", "/partners/by-code/stolen", "admin", nil), 404, "partner_not_found")
	s.must(202, "POST", "/tracking", key, ev("web", "still-works"), nil)
	var after []struct{ ID string }
	s.must(200, "GET", "/partners/"+p+"/api-keys", "admin", nil, &after)
	if len(after) != 1 {
		t.Fatalf("keys after the refused calls: %+v", after)
	}

	// The same operations through the edge, with the admin's token, work:
	// the edge forwards the caller's credential.
	s.must(200, "PATCH", "/partners/"+p+"/toggle-status", "admin", nil, nil)
	// No log line holds a token, the forged one included.
	for _, secret := range []string{s.admin, "not-the-admin-token-0123"} {
		if strings.Contains(s.logs.String(), secret) {
			t.Fatalf("a log line holds the token %q", secret)
		}
	}
}

// TestSecBusReports: reports are tenant data. With the edge's NATS role
// alone every reporter query is refused, with no token and a wrong one: the
// reporter checks the credential the edge forwards itself. The admin token
// reads every partner; a forwarded report key of partner A reads A and
// nothing of B (its partner report or its sub-system's); an ingest-only key
// reads nothing.
func TestSecBusReports(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	a, subsA, ingestA := s.tenant("repa", "web")
	b, subsB, ingestB := s.tenant("repb", "web")
	reportA := s.key(a, map[string]any{"scopes": []string{"report"}})
	s.must(202, "POST", "/tracking", ingestA, ev("web", "seen"), nil)
	s.must(202, "POST", "/tracking", ingestB, ev("web", "seen"), nil)
	s.waitTotal(subsA["web"], 1)
	s.waitTotal(subsB["web"], 1)

	nc, _ := connectAs(t, []string{s.app.NATSURL()}, s.app.Creds("edge"), nil)
	ctx := context.Background()
	from, to := time.Now().UTC().Add(-2*time.Hour), time.Now().UTC().Add(time.Hour)
	type query struct {
		name, op string
		q        any
	}
	queries := []query{
		{"partner A", reportapi.Partner, report.PartnerQuery{PartnerID: a, From: from, To: to}},
		{"sub-system of A", reportapi.SubSystem, report.SubSystemQuery{SubSystemID: subsA["web"], From: from, To: to}},
		{"partner B", reportapi.Partner, report.PartnerQuery{PartnerID: b, From: from, To: to}},
		{"sub-system of B", reportapi.SubSystem, report.SubSystemQuery{SubSystemID: subsB["web"], From: from, To: to}},
		// Naming B as the partner a query is confined to does not make B's
		// sub-system a key of A's.
		{"sub-system of B claimed as B's", reportapi.SubSystem, report.SubSystemQuery{SubSystemID: subsB["web"], PartnerID: b, From: from, To: to}},
	}
	run := func(who string, cctx context.Context, want func(q query) apierr.Code) {
		t.Helper()
		for _, q := range queries {
			var rep struct{ TotalEvents int64 }
			err := natsx.Call(cctx, nc, subject.Report(q.op), q.q, &rep)
			switch w := want(q); {
			case w == "" && (err != nil || rep.TotalEvents != 1):
				t.Errorf("%s, %s: %v, %d events, want the report", who, q.name, err, rep.TotalEvents)
			case w != "" && !apierr.Is(err, w):
				t.Errorf("%s, %s: %v, want %s", who, q.name, err, w)
			}
		}
	}
	always := func(c apierr.Code) func(query) apierr.Code { return func(query) apierr.Code { return c } }
	run("the edge role alone", ctx, always(apierr.AdminRequired))
	run("a wrong admin token", natsx.WithAdminToken(ctx, "not-the-admin-token-0123"), always(apierr.AdminInvalid))
	run("an ingest-only key", natsx.WithAPIKey(ctx, ingestA), always(apierr.ScopeMissing))
	run("the admin token", natsx.WithAdminToken(ctx, s.admin), always(""))
	run("a report key of A", natsx.WithAPIKey(ctx, reportA.APIKey), func(q query) apierr.Code {
		switch {
		case q.op == reportapi.Partner && q.name != "partner A":
			return apierr.PartnerNotFound
		case q.op == reportapi.SubSystem && q.name != "sub-system of A":
			return apierr.SubSystemNotFound
		}
		return ""
	})
	// Revoked, it reads nothing.
	s.must(200, "DELETE", "/partners/"+a+"/api-keys/"+reportA.ID, "admin", nil, nil)
	deadline := time.Now().Add(10 * time.Second) // the reporter trusts a verified key for a few seconds
	for {
		err := natsx.Call(natsx.WithAPIKey(ctx, reportA.APIKey), nc, subject.Report(reportapi.Partner), queries[0].q, nil)
		if apierr.Is(err, apierr.APIKeyRevoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked key still reads reports: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, secret := range []string{s.admin, ingestA, reportA.APIKey} {
		if strings.Contains(s.logs.String(), secret) {
			t.Fatalf("a log line holds the credential %q", secret)
		}
	}
}

// TestSecBusBanner: the start banner (standard output, often the log
// stream) shows the admin token only on the first start, when it was
// generated; afterwards only where it is kept.
func TestSecBusBanner(t *testing.T) {
	dir := t.TempDir()
	banner := func(s *sys) string {
		var b bytes.Buffer
		s.app.Banner(&b)
		return b.String()
	}
	s := start(t, dir)
	first := banner(s)
	if !s.app.TokenWasCreated || !strings.Contains(first, s.admin) {
		t.Fatalf("first start: the generated token is not shown:\n%s", first)
	}
	token := s.admin
	s.stop()

	s = start(t, dir)
	again := banner(s)
	if s.admin != token || s.app.TokenWasCreated {
		t.Fatal("the token kept in the data dir was not reused")
	}
	if strings.Contains(again, token) {
		t.Fatalf("a later start shows the token:\n%s", again)
	}
	if want := "kept in " + filepath.Join(dir, "admin-token"); !strings.Contains(again, want) {
		t.Fatalf("the banner does not say %q:\n%s", want, again)
	}
	if !strings.Contains(again, "in-process only") {
		t.Fatalf("the banner does not say NATS is in-process only:\n%s", again)
	}
	s.stop()

	given := "given-admin-token-0123456789"
	s = startWith(t, t.TempDir(), func(c *config) { c.AdminToken = given })
	if b := banner(s); strings.Contains(b, given) || !strings.Contains(b, "VT_ADMIN_TOKEN") {
		t.Fatalf("with a configured token:\n%s", b)
	}
}

// TestSecBusInboxSniffing: every edge shares one NATS role, which may read
// the edges' inbox (and only it). A connection of that role listening to it
// while an admin creates and regenerates keys and an edge looks them up sees
// no plain key, signing secret, hash or admin token: those answers are sealed.
func TestSecBusInboxSniffing(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	nc, _ := connectAs(t, []string{s.app.NATSURL()}, s.app.Creds("edge"), nil)
	seen, err := nc.SubscribeSync(subject.InboxPrefix("edge") + ".>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	p, _, key := s.tenant("sniffed", "web")
	k := s.key(p, nil)
	var next createdKey
	s.must(201, "POST", "/partners/"+p+"/api-keys/"+k.ID+"/regenerate", "admin", map[string]any{"graceSeconds": 60}, &next)
	for _, kk := range []string{key, k.APIKey, next.APIKey} {
		s.must(202, "POST", "/tracking", kk, ev("web", "x"), nil) // a lookup of each key: auth.key
	}
	secrets := []string{s.admin, key, k.APIKey, next.APIKey, k.SigningSecret, next.SigningSecret}
	for _, full := range []string{key, k.APIKey, next.APIKey} {
		_, secret, _ := tenant.ParseKey(full)
		h := tenant.HashSecret(secret)
		secrets = append(secrets, secret, hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h))
	}
	// The answers of the tenant's 3 admin writes, the second key's, the
	// regenerate and the 3 key lookups (auth.key): 8 sealed answers, read as
	// they arrive among the workers' fetches; none in the clear.
	sealed, read := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for sealed < 8 && time.Now().Before(deadline) {
		m, err := seen.NextMsg(time.Second)
		if err != nil {
			continue
		}
		read++
		if m.Header.Get(natsx.HeaderSealed) != "" {
			sealed++
		}
		for _, secret := range secrets {
			if bytes.Contains(m.Data, []byte(secret)) || strings.Contains(fmt.Sprint(m.Header), secret) {
				t.Fatalf("a reply on %s holds a secret in the clear: %.200s", m.Subject, m.Data)
			}
		}
	}
	if sealed < 8 {
		t.Fatalf("saw %d sealed answers among %d, want 8", sealed, read)
	}
}

// TestSecBusInboxesArePrivate: each NATS user reads only its own inbox. A
// partner's internal service, or a leaked edge credential, subscribing to
// every inbox (where the workers receive the events they store, and
// services their answers) is refused by the server; and listening to its
// own inbox while another partner's events flow through the system, it sees
// none of them.
func TestSecBusInboxesArePrivate(t *testing.T) {
	s := startWith(t, t.TempDir(), func(c *config) { c.NATS.Host, c.NATS.Port = "127.0.0.1", -1 })
	url := s.app.NATSURL()
	spy, _, _ := s.tenant("spy", "web")
	_, victimSubs, victimKey := s.tenant("victim", "web")
	pcreds, err := natsauth.PartnerCreds(s.app.AuthDir, spy)
	if err != nil {
		t.Fatal(err)
	}
	pfile := filepath.Join(t.TempDir(), "spy.creds")
	os.WriteFile(pfile, pcreds, 0o600)

	type listener struct {
		name string
		own  *nats.Subscription
	}
	var listeners []listener
	for _, who := range []struct{ name, creds, user string }{
		{"partner", pfile, natsauth.PartnerUser(spy)},
		{"edge", s.app.Creds("edge"), "edge"},
		{"reporter", s.app.Creds("reporter"), "reporter"},
	} {
		v := &violations{}
		nc, _ := connectAs(t, []string{url}, who.creds, v)
		for _, other := range []string{"_INBOX.>", "_I.>", subject.InboxPrefix("workers") + ".>", subject.InboxPrefix("registry") + ".>", subject.InboxPrefix(natsauth.PartnerUser(tenant.NewID())) + ".>"} {
			if other == subject.InboxPrefix(who.user)+".>" {
				continue
			}
			if _, err := nc.Subscribe(other, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			nc.Flush()
			v.has(t, other)
		}
		own, err := nc.SubscribeSync(subject.InboxPrefix(who.user) + ".>")
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		listeners = append(listeners, listener{who.name, own})
	}
	const marker = "MARKER-victim-user-42"
	var out struct{ ID string }
	s.must(202, "POST", "/tracking", victimKey, ev("web", "purchase", "userId", marker, "metadata", map[string]any{"email": "alice@victim.example"}), &out)
	s.waitTotal(victimSubs["web"], 1)
	for _, l := range listeners {
		for {
			m, err := l.own.NextMsg(100 * time.Millisecond)
			if err != nil {
				break
			}
			if bytes.Contains(m.Data, []byte(marker)) || bytes.Contains(m.Data, []byte("alice@victim.example")) {
				t.Fatalf("the %s's own inbox received the victim's event on %s", l.name, m.Subject)
			}
		}
	}
}
