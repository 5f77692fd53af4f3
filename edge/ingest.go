package edge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/volcanion/tracking/edge/internal/authcache"
	"github.com/volcanion/tracking/edge/internal/groupcommit"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

var (
	mAccepted = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_events_accepted_total",
		Help: "Events acknowledged by JetStream and answered 202."})
	mRejected = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_edge_events_rejected_total",
		Help: "Events refused, by reason (the error code)."}, []string{"reason"})
	mPublishSeconds = promauto.NewHistogram(prometheus.HistogramOpts{Name: "trk_edge_publish_duration_seconds",
		Help: "Time from publish to JetStream acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)})
)

const maxUserAgent = 512

// principal is an authenticated partner key.
type principal struct {
	key     tenant.APIKey
	partner authcache.Partner
}

// authenticate checks X-Api-Key: O(1) by key id, constant-time secret
// compare, then the key's and the partner's state, on every request.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (principal, error) {
	raw := strings.TrimSpace(r.Header.Get("X-Api-Key"))
	if raw == "" {
		return principal{}, apierr.New(apierr.APIKeyRequired, "an API key is required: send it in the X-Api-Key header")
	}
	return s.authenticateKey(ctx, raw)
}

// authenticateKey checks a key however it arrived.
func (s *Server) authenticateKey(ctx context.Context, raw string) (principal, error) {
	id, secret, ok := tenant.ParseKey(raw)
	if !ok {
		return principal{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	k, err := s.cache.Key(ctx, id, secret)
	if err != nil {
		return principal{}, err
	}
	if !tenant.SecretMatches(secret, k.Hash) {
		return principal{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	}
	switch {
	case k.Status != tenant.KeyActive:
		return principal{}, apierr.New(apierr.APIKeyRevoked, "this API key was revoked")
	case k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt):
		return principal{}, apierr.New(apierr.APIKeyExpired, "this API key expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	p, err := s.cache.Partner(ctx, k.PartnerID)
	if apierr.Is(err, apierr.PartnerNotFound) {
		return principal{}, apierr.New(apierr.APIKeyInvalid, "invalid API key")
	} else if err != nil {
		return principal{}, err
	}
	if p.Status != tenant.Active {
		return principal{}, apierr.New(apierr.PartnerInactive, "the partner of this key is %s", strings.ToLower(string(p.Status)))
	}
	return principal{key: k, partner: p}, nil
}

// itemResult is one event's answer.
type itemResult struct {
	Index     int           `json:"index"`
	ID        string        `json:"id,omitempty"`
	EventTime *time.Time    `json:"eventTime,omitempty"`
	Status    string        `json:"status"` // Queued or Rejected
	Duplicate bool          `json:"duplicate,omitempty"`
	Error     *apierr.Error `json:"error,omitempty"`
}

// build validates one input and makes the event to publish.
func (s *Server) build(pr principal, in event.Input, ip, ua string, now time.Time) (event.Event, error) {
	var ss tenant.SubSystem
	var ok bool
	if bound := pr.key.SubSystemID; bound != "" {
		// A bound key writes to its sub-system only; the code may be left out.
		if ss, ok = pr.partner.SubSystemByID(bound); !ok {
			return event.Event{}, apierr.New(apierr.SubSystemInactive, "the sub-system this key is bound to is deleted")
		}
		if in.SubSystemCode != "" && in.SubSystemCode != ss.Code {
			return event.Event{}, apierr.New(apierr.KeySubSystem, "this key may only send events of sub-system %s", quote(ss.Code))
		}
	} else if ss, ok = pr.partner.SubSystem(in.SubSystemCode); !ok {
		return event.Event{}, apierr.Invalid(apierr.FieldError{Field: "subSystemCode", Message: "no sub-system with code " + quote(in.SubSystemCode) + " exists for this partner"})
	}
	if ss.Status != tenant.Active {
		return event.Event{}, apierr.New(apierr.SubSystemInactive, "sub-system %s is inactive", quote(ss.Code))
	}
	e := event.Event{ID: in.ID, PartnerID: pr.partner.ID, SubSystemID: ss.ID, SubSystemCode: ss.Code, EventType: in.EventType,
		Timestamp: now, ReceivedAt: now, UserID: in.UserID, AnonymousID: in.AnonymousID, Metadata: in.Metadata,
		IP: ip, UserAgent: ua, KeyID: pr.key.ID}
	if e.ID == "" {
		e.ID = tenant.NewID()
	}
	if in.Timestamp != nil {
		e.Timestamp = *in.Timestamp
	}
	return e, nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// msgID is the Nats-Msg-Id of an event the edge publishes: a MAC, under a
// key only services can read, of the partner, the event id and what the
// event says. A retry of the same event is dropped by JetStream's window;
// the same id with other content is not (storage reports it as a conflict);
// and no partner publishing straight to NATS can pre-empt another's id.
func (s *Server) msgID(e *event.Event) string { return string(s.appendMsgID(nil, e)) }

// appendMsgID appends msgID(e) to dst.
func (s *Server) appendMsgID(dst []byte, e *event.Event) []byte {
	m := s.macs.Get().(*mac)
	defer s.macs.Put(m)
	m.h.Reset()
	d := e.Digest()
	m.in = append(append(append(append(append(m.in[:0], e.PartnerID...), 0), e.ID...), 0), d[:]...)
	m.h.Write(m.in)
	dst = append(dst, "e:"...)
	return hex.AppendEncode(dst, m.h.Sum(m.sum[:0])[:20])
}

// mac is a reusable HMAC-SHA256 under the de-duplication key with scratch
// space, so a msgID costs no allocation of its own.
type mac struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// newMsgs makes the messages of events: each with its de-duplication id,
// the stream it must land in, and the trace context. The messages, their
// bodies and their ids are cut from a few shared allocations rather than
// several each: a bulk makes hundreds.
func (s *Server) newMsgs(ctx context.Context, events []*event.Event) []*nats.Msg {
	n := len(events)
	msgs := make([]nats.Msg, n)
	out := make([]*nats.Msg, n)
	size := 0
	for _, e := range events {
		size += 320 + len(e.ID) + len(e.EventType) + len(e.UserID) + len(e.AnonymousID) + len(e.Metadata) + len(e.UserAgent)
	}
	data := make([]byte, 0, size)
	idBuf := make([]byte, 0, n*msgIDLen)
	var subj, lastP, lastS string
	for i, e := range events {
		if i == 0 || e.PartnerID != lastP || e.SubSystemID != lastS {
			subj, lastP, lastS = subject.Events(e.PartnerID, e.SubSystemID), e.PartnerID, e.SubSystemID
		}
		start := len(data)
		data = e.AppendJSON(data)
		msgs[i].Subject, msgs[i].Data = subj, data[start:len(data):len(data)]
		idBuf = s.appendMsgID(idBuf, e)
		out[i] = &msgs[i]
	}
	ids := string(idBuf)
	vals := make([]string, n) // each message's Nats-Msg-Id value, one slice cut n ways
	for i := range msgs {
		vals[i] = ids[i*msgIDLen : (i+1)*msgIDLen]
		h := make(nats.Header, 3)
		h[subject.HeaderMsgID] = vals[i : i+1 : i+1]
		h[jetstream.ExpectedStreamHeader] = hvEventsStream
		natsx.Inject(ctx, h)
		msgs[i].Header = h
	}
	return out
}

// msgIDLen is the length of every msgID: "e:" and 40 hex digits.
const msgIDLen = 2 + 40

var hvEventsStream = []string{subject.EventsStream}

// publish stores msgs in EVENTS, grouped with other requests' (groupcommit).
func (s *Server) publish(ctx context.Context, msgs []*nats.Msg) []groupcommit.Ack {
	if s.pub == nil {
		acks := make([]groupcommit.Ack, len(msgs))
		for i := range acks {
			acks[i].Err = fmt.Errorf("%w: %w", groupcommit.ErrNotSent, nats.ErrConnectionClosed)
		}
		return acks
	}
	return s.pub.Publish(ctx, msgs)
}

// publishErr turns a JetStream publish failure into an API error. Only an
// event known not to be stored is answered "retry later"; when no answer
// came (a timeout, a connection lost after sending) it may be stored, and
// the client is told to retry with the same id, which is counted once.
func publishErr(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum") || strings.Contains(apiErr.Description, "resources")):
		return apierr.New(apierr.Backpressure, "the event stream is full; retry later")
	case errors.As(err, &apiErr), errors.Is(err, groupcommit.ErrNotSent):
		return apierr.New(apierr.Unavailable, "the event stream is unavailable; retry later")
	}
	return apierr.New(apierr.Timeout, "the event stream did not acknowledge in time; the event may be stored: retry with the same event id and it is counted once")
}

func (s *Server) track(w http.ResponseWriter, r *http.Request, _ httprouter.Params, rs *reqState) (reply, error) {
	ctx := r.Context()
	pr, err := s.ingestPrincipal(ctx, r)
	if err != nil {
		return reject(err, 1)
	}
	rs.partnerID, rs.events = pr.partner.ID, 1
	// Everything that needs no body comes first, so a refused request
	// costs no body read: the key, the signature headers, the rate limit.
	if err := s.checkSignatureHeaders(r, pr); err != nil {
		return reject(err, 1)
	}
	if err := s.rateLimit(ctx, w, pr, 1); err != nil {
		return reject(err, 1)
	}
	body, err := s.readBody(w, r, rs, s.cfg.MaxBodyBytes)
	if err != nil {
		return reject(err, 1)
	}
	if err := s.verifySignature(ctx, r, pr, body); err != nil {
		return reject(err, 1)
	}
	now := s.now().UTC()
	in, err := event.Decode(body, s.limits(pr), now)
	if err != nil {
		return reject(err, 1)
	}
	e, err := s.build(pr, in, s.clientIP(r), truncate(r.UserAgent(), maxUserAgent), now)
	if err != nil {
		return reject(err, 1)
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	sctx, span := s.publishSpan(pctx, 1)
	ack := s.publish(pctx, s.newMsgs(sctx, []*event.Event{&e}))[0]
	span.End()
	mPublishSeconds.Observe(time.Since(start).Seconds())
	ts := e.Timestamp
	if err := ack.Err; err != nil {
		s.log.Warn().Err(err).Msg("publish failed")
		// Name the event, generated id included, so a retry is counted once.
		err = publishErr(err)
		rep, err := reject(err, 1)
		rep.data = itemResult{ID: e.ID, EventTime: &ts, Status: "Rejected", Error: apierr.From(err)}
		return rep, err
	}
	mAccepted.Inc()
	return accepted(itemResult{ID: e.ID, EventTime: &ts, Status: "Queued", Duplicate: ack.Duplicate}, "Event queued for processing"), nil
}

// ingestPrincipal authenticates a key that may send events, and samples its use.
func (s *Server) ingestPrincipal(ctx context.Context, r *http.Request) (principal, error) {
	pr, err := s.authenticate(ctx, r)
	if err == nil {
		err = needScope(pr, tenant.ScopeIngest)
	}
	if err == nil {
		s.touch(pr.key.ID)
	}
	return pr, err
}

// limits are the event limits for a key: a bound key may omit subSystemCode.
func (s *Server) limits(pr principal) event.Limits {
	lim := s.cfg.Limits
	lim.SubSystemCodeOptional = pr.key.SubSystemID != ""
	return lim
}

func reject(err error, n int) (reply, error) {
	mRejected.WithLabelValues(string(apierr.From(err).Code)).Add(float64(n))
	return reply{}, err
}

// bulkResult answers a bulk request: one result per input item, in order.
type bulkResult struct {
	Accepted int          `json:"accepted"`
	Rejected int          `json:"rejected"`
	Results  []itemResult `json:"results"`
}

func (s *Server) trackBulk(w http.ResponseWriter, r *http.Request, _ httprouter.Params, rs *reqState) (reply, error) {
	ctx := r.Context()
	pr, err := s.ingestPrincipal(ctx, r)
	if err != nil {
		return reject(err, 1)
	}
	rs.partnerID = pr.partner.ID
	// As for one event: nothing is read before the key, the signature
	// headers and an admission token (rateLimit explains the rule).
	if err := s.checkSignatureHeaders(r, pr); err != nil {
		return reject(err, 1)
	}
	if err := s.rateLimit(ctx, w, pr, 1); err != nil {
		return reject(err, 1)
	}
	body, err := s.readBody(w, r, rs, s.cfg.MaxBulkBytes)
	if err != nil {
		return reject(err, 1)
	}
	if err := s.verifySignature(ctx, r, pr, body); err != nil {
		return reject(err, 1)
	}
	items, err := event.DecodeBatch(body, s.cfg.MaxBulkEvents)
	if err != nil {
		return reject(err, 1)
	}
	rs.events = len(items)
	if err := s.rateLimitRest(ctx, w, pr, len(items)); err != nil { // a bulk counts its events
		return reject(err, len(items))
	}
	lim := s.limits(pr)
	now := s.now().UTC()
	ip, ua := s.clientIP(r), truncate(r.UserAgent(), maxUserAgent)
	res := bulkResult{Results: make([]itemResult, len(items))}
	events := make([]event.Event, len(items))
	valid := make([]*event.Event, 0, len(items))
	index := make([]int, 0, len(items)) // valid[k] is items[index[k]]

	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	// fail names the event when it has an id: the client's, or the one the
	// edge made for it (a retry with that id is counted once).
	fail := func(i int, id string, err error) {
		ae := apierr.From(err)
		mRejected.WithLabelValues(string(ae.Code)).Inc()
		res.Results[i] = itemResult{Index: i, ID: id, Status: "Rejected", Error: ae}
		if id != "" && events[i].ID == id {
			ts := events[i].Timestamp
			res.Results[i].EventTime = &ts
		}
		res.Rejected++
	}
	seen := make(idsSeen, len(items))
	for i, raw := range items {
		in, err := event.Decode(raw, lim, now)
		if err == nil {
			events[i], err = s.build(pr, in, ip, ua, now)
		}
		if err == nil {
			err = seen.check(&events[i], "id")
		}
		if err != nil {
			id := in.ID
			if !event.ValidID(id, lim) {
				id = "" // never echo an id that is itself the problem
			}
			fail(i, id, err)
			continue
		}
		valid = append(valid, &events[i])
		index = append(index, i)
	}
	s.queue(pctx, valid, index, &res, fail, false)
	mPublishSeconds.Observe(time.Since(start).Seconds())
	mAccepted.Add(float64(res.Accepted))
	if res.Accepted == 0 {
		// Nothing was queued: answer with the first item's error status, the
		// per-item results still in data.
		first := res.Results[0].Error
		return reply{status: first.Code.Status(), data: res}, &apierr.Error{Code: first.Code,
			Message: "no event was accepted; see data.results for each event's error", Fields: nil}
	}
	return accepted(res, "events queued for processing"), nil
}

var hvFirstWins = []string{"1"}

// publishSpan starts the producer span whose context the published events
// carry to the workers.
func (s *Server) publishSpan(ctx context.Context, n int) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, "publish "+subject.EventsStream, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", n)))
}

// idsSeen holds the events of one request by id. The same id twice with
// the same content is one event, counted once; with other content the
// second is refused here, where the client can be told (past the request,
// only the worker can see it, and it dead-letters it). Digests are only
// computed for an id met twice: a bulk of distinct ids hashes nothing.
type idsSeen map[string]*event.Event

func (m idsSeen) check(e *event.Event, field string) error {
	prev, ok := m[e.ID]
	if !ok {
		m[e.ID] = e
		return nil
	}
	if prev.Digest() != e.Digest() {
		return apierr.New(apierr.DuplicateEvent, "%s %s appears earlier in this request with other content; give each event its own id", field, quote(e.ID))
	}
	return nil
}

// queue publishes the valid events of a bulk, item index[k] being
// valid[k], and sets each one's result: Queued, or its failure through fail.
func (s *Server) queue(ctx context.Context, valid []*event.Event, index []int, res *bulkResult, fail func(i int, id string, err error), firstWins bool) {
	if len(valid) == 0 {
		return
	}
	sctx, span := s.publishSpan(ctx, len(valid))
	defer span.End()
	msgs := s.newMsgs(sctx, valid)
	if firstWins {
		for _, m := range msgs {
			m.Header[subject.HeaderFirstWins] = hvFirstWins
		}
	}
	for k, ack := range s.publish(ctx, msgs) {
		i, e := index[k], valid[k]
		if ack.Err != nil {
			fail(i, e.ID, publishErr(ack.Err))
			continue
		}
		ts := e.Timestamp
		res.Results[i] = itemResult{Index: i, ID: e.ID, EventTime: &ts, Status: "Queued", Duplicate: ack.Duplicate}
		res.Accepted++
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// clientIP is the peer address, or the first untrusted address of
// X-Forwarded-For (read right to left) when the peer is a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return truncate(host, 64)
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if a = a.Unmap(); !s.trusted(a) {
			return a.String()
		}
	}
	return peer.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
