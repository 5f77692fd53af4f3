package edge

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/signing"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// needScope refuses a key without the scope a route needs.
func needScope(pr principal, scope string) error {
	if !pr.key.HasScope(scope) {
		return apierr.New(apierr.ScopeMissing, "this key lacks the %s scope", scope)
	}
	return nil
}

// reportAccess admits the admin, or a partner key with the report scope; it
// returns the partner the caller is confined to ("" for the admin), and the
// context of the reporter call, which forwards the caller's own credential:
// the reporter checks it again, so the edge's NATS credential alone reads
// no partner's reports.
func (s *Server) reportAccess(ctx context.Context, r *http.Request) (string, context.Context, error) {
	confined, cctx, err := s.reportCredential(ctx, r)
	if err != nil {
		return "", nil, err
	}
	// The report call's own deadline, which the caller's request cannot
	// stretch: a slow or stopped reporter costs at most this.
	cctx, cancel := context.WithTimeout(cctx, s.cfg.ReportTimeout)
	context.AfterFunc(ctx, cancel)
	return confined, cctx, nil
}

// reportCredential checks a report request's credential.
func (s *Server) reportCredential(ctx context.Context, r *http.Request) (string, context.Context, error) {
	partner, _, cctx, err := s.reportKey(ctx, r)
	return partner, cctx, err
}

// reportKey checks a report request's credential, and returns the
// sub-system a key is bound to ("" for none, and for the admin) besides.
// The reporter confines its answers itself; the edge's own streams (the
// live tail) use it.
func (s *Server) reportKey(ctx context.Context, r *http.Request) (partner, sub string, _ context.Context, _ error) {
	if r.Header.Get("X-Api-Key") != "" && r.Header.Get("Authorization") == "" && r.Header.Get("X-Admin-Token") == "" {
		pr, err := s.authenticate(ctx, r)
		if err != nil {
			return "", "", nil, err
		}
		if err := needScope(pr, tenant.ScopeReport); err != nil {
			return "", "", nil, err
		}
		// Signing rules hold on every route a key can call. A report
		// request has no body: it is signed over an empty one.
		if err := s.verifySignature(ctx, r, pr, nil); err != nil {
			return "", "", nil, err
		}
		return pr.partner.ID, pr.key.SubSystemID, natsx.WithAPIKey(ctx, strings.TrimSpace(r.Header.Get("X-Api-Key"))), nil
	}
	if adminToken(r) == "" && r.Header.Get("X-Api-Key") == "" {
		return "", "", nil, apierr.New(apierr.AdminRequired,
			"this route needs the admin credential (Authorization: Bearer <token>) or a partner API key with the %s scope (X-Api-Key)", tenant.ScopeReport)
	}
	if err := s.requireAdmin(r); err != nil {
		return "", "", nil, err
	}
	return "", "", natsx.WithAdminToken(ctx, adminToken(r)), nil
}

// boundTo refuses a query of sub-system sub ("": the partner's whole) by a
// key bound to another, as the reporter does.
func boundTo(bound, sub string) error {
	if bound != "" && sub != bound {
		return apierr.New(apierr.KeySubSystem, "this key reads sub-system %s only: ask with subSystemId=%s", bound, bound)
	}
	return nil
}

// touchEvery is how often a key's last use is sent to the registry, at most.
const touchEvery = time.Minute

type touches struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// touch records a key's use: sampled, so a busy key costs one registry
// message a minute per edge, not one write per request.
func (s *Server) touch(keyID string) {
	now := s.now()
	s.touched.mu.Lock()
	if now.Sub(s.touched.last[keyID]) < touchEvery {
		s.touched.mu.Unlock()
		return
	}
	s.touched.last[keyID] = now
	s.touched.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := natsx.Call(ctx, s.nc, subject.Registry(api.KeysTouch), api.Request{KeyID: keyID, At: &now}, nil); err != nil {
			s.log.Debug().Err(err).Msg("last-use sample not recorded")
		}
	}()
}

// limitFor is the events-per-second limit of a key: its own, else its
// partner's, else the default; 0 means no limit.
func (s *Server) limitFor(pr principal) int {
	switch {
	case pr.key.RateLimit > 0:
		return pr.key.RateLimit
	case pr.partner.RateLimit > 0:
		return pr.partner.RateLimit
	}
	return s.cfg.RateLimit
}

func seconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// rateLimit takes n tokens from the key's budget and sets the RateLimit
// headers, on success too; over the limit it answers 429 with the real wait.
//
// The rule, so that a key with no tokens left costs no body read: a request
// takes one token before its body is read (its admission), and a bulk takes
// the rest of its events once decoded (rateLimitRest). A bulk refused then
// is refused whole, and its admission token is spent.
func (s *Server) rateLimit(ctx context.Context, w http.ResponseWriter, pr principal, n int) error {
	limit := s.limitFor(pr)
	if limit <= 0 || n <= 0 {
		return nil
	}
	d := s.limiter.Take(ctx, pr.key.ID, limit, n)
	setRateHeaders(w.Header(), d.Limit, max(0, d.Remaining), int(math.Ceil(d.Reset.Seconds())))
	if d.Allowed {
		return nil
	}
	w.Header().Set("Retry-After", seconds(max(d.RetryAfter, time.Second)))
	return apierr.New(apierr.RateLimited, "rate limit of %d events per second exceeded; retry after %s s", limit, seconds(max(d.RetryAfter, time.Second)))
}

// setRateHeaders sets the three RateLimit headers from one string and one
// slice: a header per value would cost six allocations a request.
func setRateHeaders(h http.Header, limit, remaining, reset int) {
	var buf [3 * 20]byte
	b := strconv.AppendInt(buf[:0], int64(limit), 10)
	l := len(b)
	b = strconv.AppendInt(b, int64(remaining), 10)
	r := len(b)
	b = strconv.AppendInt(b, int64(reset), 10)
	all := string(b)
	vals := [3]string{all[:l], all[l:r], all[r:]}
	v := vals[:]
	h["Ratelimit-Limit"], h["Ratelimit-Remaining"], h["Ratelimit-Reset"] = v[0:1:1], v[1:2:2], v[2:3:3]
}

// rateLimitRest charges a decoded bulk of events for all but the token its
// admission already took.
func (s *Server) rateLimitRest(ctx context.Context, w http.ResponseWriter, pr principal, events int) error {
	if limit := s.limitFor(pr); limit > 0 && events > limit {
		return apierr.New(apierr.RateLimited, "%d events in one request is more than this key's limit of %d per second; send smaller batches", events, limit)
	}
	return s.rateLimit(ctx, w, pr, events-1)
}

func requiresSignature(pr principal) bool {
	return pr.key.RequireSignature || pr.partner.RequireSignature
}

// checkSignatureHeaders checks what a signed request can be judged by
// before its body is read: the headers are there, the timestamp is fresh
// and the nonce well formed. An unsigned request costs no body read.
func (s *Server) checkSignatureHeaders(r *http.Request, pr principal) error {
	if !requiresSignature(pr) {
		return nil
	}
	ts, nonce, sig := r.Header.Get(signing.HeaderTimestamp), r.Header.Get(signing.HeaderNonce), r.Header.Get(signing.HeaderSignature)
	if ts == "" || nonce == "" || sig == "" {
		return apierr.New(apierr.SignatureRequired, "this key must sign its requests: send X-Timestamp, X-Nonce and X-Signature")
	}
	at, ok := signing.ParseTimestamp(ts)
	if !ok {
		return apierr.New(apierr.SignatureInvalid, "X-Timestamp must be Unix seconds")
	}
	if skew := s.now().Sub(at); skew > s.cfg.ReplayWindow || skew < -s.cfg.ReplayWindow {
		return apierr.New(apierr.RequestExpired, "X-Timestamp is %s away from the server's time; the window is ±%s", skew.Round(time.Second), s.cfg.ReplayWindow)
	}
	if !signing.ValidNonce(nonce) {
		return apierr.New(apierr.SignatureInvalid, "X-Nonce must be 16-128 letters, digits, '-' or '_'")
	}
	return nil
}

// verifySignature enforces replay protection when the key or its partner
// requires it: a fresh timestamp, a valid HMAC, and a nonce never seen.
func (s *Server) verifySignature(ctx context.Context, r *http.Request, pr principal, body []byte) error {
	if !requiresSignature(pr) {
		return nil
	}
	if err := s.checkSignatureHeaders(r, pr); err != nil {
		return err
	}
	ts, nonce, sig := r.Header.Get(signing.HeaderTimestamp), r.Header.Get(signing.HeaderNonce), r.Header.Get(signing.HeaderSignature)
	if len(pr.key.SigningSecret) == 0 || !signing.Valid(pr.key.SigningSecret, r.Method, signing.Target(r.URL), ts, nonce, body, sig) {
		return apierr.New(apierr.SignatureInvalid, "X-Signature does not match the request")
	}
	// Remember the nonce only once the signature holds, so nobody can burn
	// someone else's nonces; kept for the whole window on both sides.
	fresh, err := s.nonces.Fresh(ctx, pr.key.ID+":"+nonce, 2*s.cfg.ReplayWindow)
	if err != nil {
		s.log.Error().Err(err).Msg("nonce store unavailable")
		return apierr.New(apierr.Unavailable, "replay protection is unavailable; retry later")
	}
	if !fresh {
		return apierr.New(apierr.RequestReplayed, "this X-Nonce was already used: the request is a replay")
	}
	return nil
}

// ---- admin credentials ----

// requireAdmin checks the admin credential: "Authorization: Bearer <token>"
// or "X-Admin-Token: <token>". Every configured token is compared, in
// constant time, so timing tells nothing.
func (s *Server) requireAdmin(r *http.Request) error {
	tok := adminToken(r)
	if tok == "" {
		return apierr.New(apierr.AdminRequired, "this route needs the admin credential: send Authorization: Bearer <token>")
	}
	return s.admin.Check(tok)
}
