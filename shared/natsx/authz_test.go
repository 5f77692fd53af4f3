package natsx_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/testenv"
)

// TestGuardAndSeal: a guarded endpoint runs only for an accepted header;
// its answer travels sealed, and only the caller holding the token opens it.
func TestGuardAndSeal(t *testing.T) {
	nc, _ := testenv.Conn(t, testenv.NATS(t))
	const token = "the-admin-token-0123"
	svc, err := micro.AddService(nc, micro.Config{Name: "guarded", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	ran := 0
	h := natsx.Handler(zerolog.Nop(), "t", "secret", time.Second, func(context.Context, []byte) (any, error) {
		ran++
		return map[string]string{"secret": "s3cr3t"}, nil
	})
	check := func(h nats.Header) error {
		if h.Get(natsx.HeaderAdminToken) != token {
			return apierr.New(apierr.AdminInvalid, "no")
		}
		return nil
	}
	if err := svc.AddEndpoint("secret", natsx.Guard(zerolog.Nop(), "secret", check, natsx.SealReplies(natsx.AdminReplyKey, h)),
		micro.WithEndpointSubject("trk.secret")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out map[string]string
	if err := natsx.Call(natsx.WithAdminToken(ctx, "wrong-token-0123456"), nc, "trk.secret", nil, &out); !apierr.Is(err, apierr.AdminInvalid) || ran != 0 {
		t.Fatalf("wrong token: %v (handler ran %d times)", err, ran)
	}
	if err := natsx.Call(natsx.WithAdminToken(ctx, token), nc, "trk.secret", nil, &out); err != nil || out["secret"] != "s3cr3t" {
		t.Fatalf("right token: %v %v", err, out)
	}
	// On the wire, sealed; with another key, it does not open.
	m := nats.NewMsg("trk.secret")
	m.Header.Set(natsx.HeaderAdminToken, token)
	reply, err := nc.RequestMsg(m, time.Second)
	if err != nil || reply.Header.Get(natsx.HeaderSealed) == "" || string(reply.Data) == `{"secret":"s3cr3t"}` {
		t.Fatalf("the answer is not sealed: %v %q", err, reply.Data)
	}
	err = natsx.Call(natsx.WithReplyKey(natsx.WithAdminToken(ctx, token), natsx.ReplyKey(natsx.PurposeAuthKey, token)), nc, "trk.secret", nil, &out)
	if !apierr.Is(err, apierr.Internal) {
		t.Fatalf("opened with the wrong key: %v", err)
	}
}

// TestForwardedAPIKey: a forwarded partner key reaches the HandlerFunc in
// RequestHeaders, the answer is sealed under it (CallerReplyKey), and the
// caller's Call opens it; a caller without the key cannot.
func TestForwardedAPIKey(t *testing.T) {
	nc, _ := testenv.Conn(t, testenv.NATS(t))
	const key = "trk_some-partner-key"
	svc, err := micro.AddService(nc, micro.Config{Name: "keyed", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	h := natsx.Handler(zerolog.Nop(), "t", "keyed", time.Second, func(ctx context.Context, _ []byte) (any, error) {
		return map[string]string{"saw": natsx.RequestHeaders(ctx).Get(natsx.HeaderAPIKey)}, nil
	})
	if err := svc.AddEndpoint("keyed", natsx.SealReplies(natsx.CallerReplyKey, h), micro.WithEndpointSubject("trk.keyed")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out map[string]string
	if err := natsx.Call(natsx.WithAPIKey(ctx, key), nc, "trk.keyed", nil, &out); err != nil || out["saw"] != key {
		t.Fatalf("forwarded key: %v %v", err, out)
	}
	m := nats.NewMsg("trk.keyed")
	m.Header.Set(natsx.HeaderAPIKey, key)
	reply, err := nc.RequestMsg(m, time.Second)
	if err != nil || reply.Header.Get(natsx.HeaderSealed) == "" || strings.Contains(string(reply.Data), key) {
		t.Fatalf("the answer is not sealed: %v %q", err, reply.Data)
	}
	other := natsx.WithReplyKey(natsx.WithAPIKey(ctx, key), natsx.ReplyKey(natsx.PurposeAPIKey, key+"x"))
	if err := natsx.Call(other, nc, "trk.keyed", nil, &out); !apierr.Is(err, apierr.Internal) {
		t.Fatalf("opened with another key: %v", err)
	}
	// Without a credential the answer is not sealed (the service refuses
	// such callers itself; nothing to seal it under).
	if err := natsx.Call(ctx, nc, "trk.keyed", nil, &out); err != nil || out["saw"] != "" {
		t.Fatalf("no credential: %v %v", err, out)
	}
}
