package edge

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/tenant"
)

// Segment's HTTP Tracking API, beside /api/v1, so that an app sending
// through Segment's libraries (or RudderStack's, which speak the same)
// changes its host name and nothing else. A write key is one of our keys
// with the ingest scope, bound to a sub-system (a Segment source is one
// sub-system), sent as HTTP Basic auth (the key as user name), in
// X-Api-Key, or as writeKey in the body (navigator.sendBeacon and
// text/plain bodies cannot set a header). Every other rule of our keys
// applies unchanged: scopes, rate limits, signing.
//
// Answers: 200 when every message was queued, or when some were refused
// for what they hold (listed in data.results, never retried by the SDKs,
// which would refuse them again); 5xx (with Retry-After) when any message
// could not be queued for a reason a retry can fix, so the SDK sends the
// whole batch again and messageId makes it count once; 429 with
// Retry-After over the key's rate; 400 for a body that is not JSON, for a
// message over 32 KB or a batch over 500 KB (as Segment answers), and for a
// key not bound to a sub-system; 401 for a bad key.

const (
	// segmentMaxDepth bounds a message's nesting: far past any real
	// properties, and well inside what the stored event may hold.
	segmentMaxDepth    = 1000
	segmentMessageMax  = 32 << 10
	segmentBatchMax    = 500 << 10
	segmentExpandedMax = 2 * segmentBatchMax
)

// segmentTypes are the event types of the calls other than track (whose
// event type is its event name). The '$' keeps them apart from any track
// event a partner names "page".
var segmentTypes = map[string]string{
	"identify": "$identify", "page": "$page", "screen": "$screen", "group": "$group", "alias": "$alias",
}

// segmentMessage is one call, as Segment's libraries send it. Unknown fields
// are ignored, as Segment does.
type segmentMessage struct {
	Type              string          `json:"type"`
	MessageID         string          `json:"messageId"`
	UserID            json.RawMessage `json:"userId"`
	AnonymousID       json.RawMessage `json:"anonymousId"`
	Event             string          `json:"event"`
	Name              json.RawMessage `json:"name"`
	Category          json.RawMessage `json:"category"`
	GroupID           json.RawMessage `json:"groupId"`
	PreviousID        json.RawMessage `json:"previousId"`
	Properties        json.RawMessage `json:"properties"`
	Traits            json.RawMessage `json:"traits"`
	Context           json.RawMessage `json:"context"`
	Integrations      json.RawMessage `json:"integrations"`
	Timestamp         looseString     `json:"timestamp"`
	OriginalTimestamp looseString     `json:"originalTimestamp"`
	SentAt            looseString     `json:"sentAt"`
}

// looseString is a field that must be a string. Another JSON value is not
// a decoding error, which would fail the whole request as invalid_json: it
// is refused as that field's error, in the message's result.
type looseString struct {
	s   string
	bad bool
}

func (l *looseString) UnmarshalJSON(b []byte) error {
	*l = looseString{}
	if string(b) == "null" {
		return nil
	}
	if json.Unmarshal(b, &l.s) != nil {
		l.bad = true
	}
	return nil
}

// segmentBody is what a request may carry besides its messages.
type segmentBody struct {
	WriteKey     looseString       `json:"writeKey"`
	Batch        []json.RawMessage `json:"batch"`
	SentAt       looseString       `json:"sentAt"`
	Context      json.RawMessage   `json:"context"`
	Integrations json.RawMessage   `json:"integrations"`
}

func (s *Server) segmentRoutes() {
	// Segment's browser library posts to the calls' first letters (/v1/t,
	// /v1/p, …, /v1/b for a batch).
	for _, call := range []string{"track", "identify", "page", "screen", "group", "alias"} {
		for _, path := range []string{"/v1/" + call, "/v1/" + call[:1]} {
			s.handle(http.MethodPost, path, cors(s.segment(call)))
			s.preflight(path, segmentPreflightHeaders)
		}
	}
	for _, path := range []string{"/v1/batch", "/v1/import", "/v1/b"} {
		s.handle(http.MethodPost, path, cors(s.segment("")))
		s.preflight(path, segmentPreflightHeaders)
	}
	s.handle(http.MethodGet, "/v1/projects/:writeKey/settings", s.segmentSettings)
}

// segmentKey is the write key of a request that sent it in a header: Basic
// auth's user name, or X-Api-Key.
func segmentKey(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok && strings.TrimSpace(user) != "" {
		return strings.TrimSpace(user)
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

// segment handles one call type, or a batch when call is "".
func (s *Server) segment(call string) handler {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, rs *reqState) (reply, error) {
		ctx := r.Context()
		limit := int64(segmentMessageMax)
		if call == "" {
			limit = segmentBatchMax
		}
		// A key in a header is checked before the body is read, as on our
		// own routes; a key in the body (sendBeacon) only after.
		var pr principal
		raw := segmentKey(r)
		if raw != "" {
			var err error
			if pr, err = s.segmentPrincipal(ctx, w, r, raw); err != nil {
				return reject(err, 1)
			}
			rs.partnerID = pr.partner.ID
		}
		rs.keyless = raw == ""
		body, err := s.readBody(w, r, rs, limit)
		if err == nil {
			switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
			case "", "identity":
			case "gzip", "x-gzip": // RudderStack's Node SDK gzips every batch
				if rs.keyless {
					limit = min(limit, keylessBodyMax) // inflated too
				}
				body, err = s.gunzip(body, limit, rs)
			default:
				err = apierr.New(apierr.UnsupportedMedia, "Content-Encoding %q is not supported: send the body as is, or gzip", enc)
			}
		}
		if err != nil {
			if apierr.Is(err, apierr.BodyTooLarge) {
				err = segmentTooLarge(call, r.ContentLength)
				if rs.keyless {
					err = apierr.New(apierr.MessageTooLarge, "a request without its key in a header (Basic auth or X-Api-Key) may be at most 64 KB, as a browser beacon is: send the key as Basic auth for larger batches")
				}
			}
			return reject(err, 1)
		}
		var top segmentBody
		if err := json.Unmarshal(body, &top); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field == "batch" {
				return reject(apierr.Invalid(apierr.FieldError{Field: "batch", Message: "must be a list of messages"}), 1)
			}
			return reject(apierr.New(apierr.InvalidJSON, "the body is not a JSON object: %v", err), 1)
		}
		if raw == "" {
			if top.WriteKey.bad {
				return reject(apierr.Invalid(apierr.FieldError{Field: "writeKey", Message: "must be a string: the write key"}), 1)
			}
			if top.WriteKey.s == "" {
				return reject(apierr.New(apierr.APIKeyRequired, "a write key is required: send it as HTTP Basic auth (the key as user name, no password), in X-Api-Key, or as writeKey in the body"), 1)
			}
			if pr, err = s.segmentPrincipal(ctx, w, r, strings.TrimSpace(top.WriteKey.s)); err != nil {
				return reject(err, 1)
			}
			rs.partnerID = pr.partner.ID
		}
		if err := s.verifySignature(ctx, r, pr, body); err != nil {
			return reject(err, 1)
		}
		if pr.key.SubSystemID == "" {
			return reject(apierr.New(apierr.KeyNotBound, "this key is not bound to a sub-system, and a Segment write key must be (a Segment source is one sub-system): create a key with subSystemId, or bind this one"), 1)
		}
		items := top.Batch
		if call != "" {
			items = []json.RawMessage{body}
		} else if len(items) == 0 {
			return reject(apierr.Invalid(apierr.FieldError{Field: "batch", Message: "must hold at least one message"}), 1)
		}
		rs.events = len(items)
		if len(items) > s.cfg.MaxBulkEvents {
			return reject(apierr.New(apierr.MessageTooLarge, "the batch holds %d messages; the limit is %d a batch: send smaller batches", len(items), s.cfg.MaxBulkEvents), len(items))
		}
		if limit := s.limitFor(pr); limit > 0 && len(items) > limit {
			// Never retryable: 429 would have the SDK send it again and again.
			return reject(apierr.New(apierr.MessageTooLarge, "the batch holds %d messages, more than this key's rate limit of %d a second allows at once: send smaller batches (maxEventsInBatch) or raise the key's limit", len(items), limit), len(items))
		}
		if call == "" {
			// The batch's context and integrations are copied into each
			// message: refuse before copying what would be too large.
			for _, f := range []struct {
				name string
				v    json.RawMessage
			}{{"context", top.Context}, {"integrations", top.Integrations}} {
				if !event.ValidText(f.v) {
					return reject(apierr.Invalid(apierr.FieldError{Field: f.name, Message: "must be valid UTF-8 text (and no unpaired surrogate escape)"}), len(items))
				}
				if d := nesting(f.v); d > segmentMaxDepth {
					return reject(apierr.Invalid(apierr.FieldError{Field: f.name, Message: fmt.Sprintf("is nested %d levels deep; the limit is %d", d, segmentMaxDepth)}), len(items))
				}
			}
			if extra := len(top.Context) + len(top.Integrations); extra > segmentMessageMax || len(items)*extra > segmentExpandedMax {
				return reject(apierr.New(apierr.MessageTooLarge, "the batch's context and integrations (%d bytes) copied into each of its %d messages would make more than %d bytes (or one message over 32 KB): send a smaller context, or the context in each message", extra, len(items), segmentExpandedMax), len(items))
			}
		}
		if err := s.rateLimitRest(ctx, w, pr, len(items)); err != nil {
			return reject(err, len(items))
		}
		return s.segmentPublish(ctx, r, pr, call, &top, items)
	}
}

// segmentPrincipal authenticates a write key and admits the request: scope,
// signature headers, one token of the rate limit.
func (s *Server) segmentPrincipal(ctx context.Context, w http.ResponseWriter, r *http.Request, raw string) (principal, error) {
	pr, err := s.authenticateKey(ctx, raw)
	if err == nil {
		err = needScope(pr, tenant.ScopeIngest)
	}
	if err != nil {
		return pr, err
	}
	s.touch(pr.key.ID)
	if err := s.checkSignatureHeaders(r, pr); err != nil {
		return pr, err
	}
	return pr, s.rateLimit(ctx, w, pr, 1)
}

// gunzip inflates a gzip body of at most limit bytes once inflated, taking
// the buffer from the body budgets as readBody does.
func (s *Server) gunzip(body []byte, limit int64, rs *reqState) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, apierr.New(apierr.InvalidJSON, "Content-Encoding is gzip but the body is not: %v", err)
	}
	out, err := s.readFrom(io.LimitReader(zr, limit+1), -1, limit, rs)
	switch {
	case err == nil:
	case apierr.Is(err, apierr.BodyTooLarge):
		err = apierr.New(apierr.MessageTooLarge, "inflated, the body is larger than the limit of %d bytes", limit)
	case apierr.Is(err, apierr.InvalidJSON):
		err = apierr.New(apierr.InvalidJSON, "the gzip body could not be inflated: %v", apierr.From(err).Message)
	}
	return out, err
}

func segmentTooLarge(call string, n int64) error {
	size := fmt.Sprintf("%d bytes", n)
	if n < 0 { // a chunked body, cut at the limit
		size = "larger than that"
	}
	if call == "" {
		return apierr.New(apierr.MessageTooLarge, "the batch is %s; the limit is 500 KB per batch: send smaller batches", size)
	}
	return apierr.New(apierr.MessageTooLarge, "the message is %s; the limit is 32 KB per message", size)
}

// segmentPublish converts, validates and queues the messages.
func (s *Server) segmentPublish(ctx context.Context, r *http.Request, pr principal, call string, top *segmentBody, items []json.RawMessage) (reply, error) {
	lim := s.limits(pr)
	now := s.now().UTC()
	ip, ua := s.clientIP(r), truncate(r.UserAgent(), maxUserAgent)
	res := bulkResult{Results: make([]itemResult, len(items))}
	events := make([]event.Event, len(items))
	valid := make([]*event.Event, 0, len(items))
	index := make([]int, 0, len(items))
	retry := false
	fail := func(i int, id string, err error) {
		ae := apierr.From(err)
		mRejected.WithLabelValues(string(ae.Code)).Inc()
		res.Results[i] = itemResult{Index: i, ID: id, Status: "Rejected", Error: ae}
		res.Rejected++
		retry = retry || ae.Code.Status() >= 500
	}
	seen := make(idsSeen, len(items))
	expanded := 0 // metadata bytes the messages make, batch context included
	for i, raw := range items {
		in, id, err := segmentInput(raw, call, top, lim, now)
		if err == nil {
			events[i], err = s.build(pr, in, ip, ua, now)
		}
		if err == nil {
			// The same messageId twice in one request: the same message
			// is counted once; other content is refused here, where the
			// client can be told.
			err = seen.check(&events[i], "messageId")
			expanded += len(events[i].Metadata)
		}
		if err != nil {
			fail(i, id, err)
			continue
		}
		valid = append(valid, &events[i])
		index = append(index, i)
	}
	if expanded > segmentExpandedMax {
		// The batch's context, copied into each message, must not turn a
		// small request into a large one.
		return reject(apierr.New(apierr.MessageTooLarge, "the batch's messages come to %d bytes of metadata with the batch's context copied into each; the limit is %d: send a smaller context or smaller batches", expanded, segmentExpandedMax), len(items))
	}
	if len(valid) > 0 {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
		defer cancel()
		start := time.Now()
		s.queue(pctx, valid, index, &res, fail, true) // messageId: the first stored wins, as at Segment
		mPublishSeconds.Observe(time.Since(start).Seconds())
	}
	mAccepted.Add(float64(res.Accepted))
	switch {
	case retry:
		// Some message may be queued again by a retry of the whole
		// request: its messageId makes it count once.
		var first *apierr.Error
		for _, it := range res.Results {
			if it.Error != nil && it.Error.Code.Status() >= 500 {
				first = it.Error
				break
			}
		}
		return reply{status: first.Code.Status(), data: res}, &apierr.Error{Code: first.Code,
			Message: "some messages were not queued; send the request again (messages already queued are counted once): " + first.Message}
	case res.Accepted == 0 && call != "":
		// One call: its message's error is the answer's, fields and all.
		e := res.Results[0].Error
		return reply{status: e.Code.Status(), data: res}, e
	case res.Accepted == 0:
		first := res.Results[0].Error
		return reply{status: first.Code.Status(), data: res}, &apierr.Error{Code: first.Code, Message: "no message was accepted; see data.results for each message's error: " + first.Message}
	}
	msg := "messages queued for processing"
	if res.Rejected > 0 {
		msg = "some messages were refused: see data.results"
	}
	return reply{status: http.StatusOK, data: res, msg: msg}, nil
}

// segmentInput maps one Segment message onto our event (the README's
// table). id is the event id it maps to, for the answer.
func segmentInput(raw json.RawMessage, call string, top *segmentBody, lim event.Limits, receivedAt time.Time) (in event.Input, id string, err error) {
	var m segmentMessage
	if len(raw) > segmentMessageMax {
		return in, "", segmentTooLarge("msg", int64(len(raw)))
	}
	// As on our own routes: a field of the wrong type is that field's
	// error, and text that is not UTF-8 (or a lone surrogate escape) is
	// refused rather than turned into U+FFFD, which would merge names.
	if err := event.DecodeObject(raw, &m); err != nil {
		return in, "", err
	}
	if d := nesting(raw); d > segmentMaxDepth {
		return in, okID(segmentID(m.MessageID, lim), lim), apierr.Invalid(apierr.FieldError{Field: "body",
			Message: fmt.Sprintf("is nested %d levels deep; the limit is %d", d, segmentMaxDepth)})
	}
	in.ID = segmentID(m.MessageID, lim)
	typ := call
	if typ == "" {
		typ = strings.ToLower(strings.TrimSpace(m.Type))
	}
	var bad []apierr.FieldError
	switch typ {
	case "track":
		in.EventType = m.Event
		if strings.TrimSpace(m.Event) == "" {
			bad = append(bad, apierr.FieldError{Field: "event", Message: "is required on a track call"})
		} else if strings.HasPrefix(strings.TrimSpace(m.Event), "$") {
			bad = append(bad, apierr.FieldError{Field: "event", Message: "names starting with $ are kept for identify, page, screen, group and alias"})
		}
	case "identify", "page", "screen", "group", "alias":
		in.EventType = segmentTypes[typ]
	default:
		bad = append(bad, apierr.FieldError{Field: "type", Message: "must be track, identify, page, screen, group or alias"})
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"name", m.Name}, {"category", m.Category}} {
		if !isAbsent(f.v) && f.v[0] != '"' {
			bad = append(bad, apierr.FieldError{Field: f.name, Message: "must be a string"})
		}
	}
	var ok bool
	if in.UserID, ok = idString(m.UserID); !ok {
		bad = append(bad, apierr.FieldError{Field: "userId", Message: "must be a string or a number"})
	}
	if in.AnonymousID, ok = idString(m.AnonymousID); !ok {
		bad = append(bad, apierr.FieldError{Field: "anonymousId", Message: "must be a string or a number"})
	}
	// Clock skew (Segment's rule): the call happened sentAt - original
	// before the request was received, by the server's clock.
	original, originalField := m.OriginalTimestamp, "originalTimestamp"
	if original.s == "" && !original.bad {
		original, originalField = m.Timestamp, "timestamp"
	}
	sentAt := m.SentAt
	if sentAt.s == "" && !sentAt.bad {
		sentAt = top.SentAt
	}
	var orig, sent time.Time
	if original.bad {
		bad = append(bad, apierr.FieldError{Field: originalField, Message: "must be an ISO 8601 date and time, as a string"})
	} else if original.s != "" {
		if orig, ok = parseSegmentTime(original.s); !ok {
			bad = append(bad, apierr.FieldError{Field: originalField, Message: "must be an ISO 8601 date and time"})
		}
	}
	if sentAt.bad {
		bad = append(bad, apierr.FieldError{Field: "sentAt", Message: "must be an ISO 8601 date and time, as a string"})
	} else if sentAt.s != "" {
		if sent, ok = parseSegmentTime(sentAt.s); !ok {
			bad = append(bad, apierr.FieldError{Field: "sentAt", Message: "must be an ISO 8601 date and time"})
		}
	}
	if len(bad) > 0 {
		return in, okID(in.ID, lim), apierr.Invalid(bad...)
	}
	switch {
	case !orig.IsZero() && !sent.IsZero():
		ts := receivedAt.Add(-sent.Sub(orig))
		in.Timestamp = &ts
	case !orig.IsZero():
		in.Timestamp = &orig
	}
	ctxJSON, integ := m.Context, m.Integrations
	if isAbsent(ctxJSON) {
		ctxJSON = top.Context
	}
	if isAbsent(integ) {
		integ = top.Integrations
	}
	md := newMetadata()
	md.raw("properties", m.Properties)
	md.raw("traits", m.Traits)
	md.raw("context", ctxJSON)
	md.raw("integrations", integ)
	// As sent, not decoded and encoded again: an escaped character must not
	// double the metadata's size.
	md.raw("name", m.Name)
	md.raw("category", m.Category)
	md.raw("groupId", m.GroupID)
	md.raw("previousId", m.PreviousID)
	// Not sentAt: an SDK sends each retry with a new one, and the same
	// message must keep the same content (event.Digest).
	md.str("originalTimestamp", original.s)
	if in.ID != m.MessageID && m.MessageID != "" {
		md.str("messageId", m.MessageID)
	}
	in.Metadata = md.done()
	if err := event.Validate(&in, lim, receivedAt); err != nil {
		if apierr.Is(err, apierr.MetadataTooLarge) { // Segment's answer for a message too large
			err = apierr.New(apierr.MessageTooLarge, "the message's properties, traits, context, integrations and names come to %d bytes; the limit is %d bytes a message", len(in.Metadata), lim.MaxMetadataBytes)
		}
		return in, okID(in.ID, lim), err
	}
	return in, in.ID, nil
}

// segmentID is the event id of a messageId: itself when it is a valid id,
// else "seg-" and a digest of it. Without one, a new id, as Segment gives
// (so two identical calls are two events, and a retry of such a call may
// count twice: Segment's libraries always send one).
func segmentID(messageID string, lim event.Limits) string {
	if messageID == "" {
		return tenant.NewID()
	}
	if event.ValidID(messageID, lim) && !strings.HasPrefix(messageID, "seg-") {
		return messageID
	}
	sum := sha256.Sum256([]byte(messageID))
	return "seg-" + hex.EncodeToString(sum[:20])
}

func okID(id string, lim event.Limits) string {
	if event.ValidID(id, lim) {
		return id
	}
	return ""
}

// idString reads a user or anonymous id: a string, or a number kept as
// written; null or absent is "".
func idString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if isAbsent(raw) {
		return "", true
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err == nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", false
	}
	return n.String(), true
}

func isAbsent(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// parseSegmentTime reads the ISO 8601 forms Segment's libraries send.
func parseSegmentTime(s string) (time.Time, bool) {
	// ISO 8601 as libraries write it: RFC 3339, a lower-case t or z, a
	// space for the T, an offset without a colon, no zone (UTC), or a date
	// alone (midnight UTC).
	s = strings.TrimSpace(s)
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// metadata builds the event's metadata object: the message's fields that
// have no column of their own, in a fixed order, those absent left out.
type metadata struct{ b []byte }

func newMetadata() *metadata { return &metadata{b: []byte{'{'}} }

func (m *metadata) key(k string) {
	if len(m.b) > 1 {
		m.b = append(m.b, ',')
	}
	m.b = append(append(append(m.b, '"'), k...), `":`...)
}

func (m *metadata) raw(k string, v json.RawMessage) {
	if isAbsent(v) {
		return
	}
	var c bytes.Buffer
	if json.Compact(&c, v) != nil {
		return // not JSON: json.Unmarshal already refused the message
	}
	m.key(k)
	m.b = append(m.b, c.Bytes()...)
}

func (m *metadata) str(k, v string) {
	if v == "" {
		return
	}
	m.key(k)
	m.b = event.AppendString(m.b, v, false)
}

func (m *metadata) done() json.RawMessage {
	if len(m.b) == 1 {
		return nil
	}
	return append(m.b, '}')
}

// segmentSettings answers what Segment's browser library loads before it
// sends anything (GET /v1/projects/{writeKey}/settings, normally from
// Segment's CDN; cdnURL points the library here): the Segment.io
// destination, aimed at this edge. Only a key that may send events through
// these routes gets settings.
func (s *Server) segmentSettings(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
	w.Header().Set("Access-Control-Allow-Origin", "*") // the library may read why, on an error too
	pr, err := s.authenticateKey(r.Context(), p.ByName("writeKey"))
	if err == nil {
		err = needScope(pr, tenant.ScopeIngest)
	}
	if err == nil && pr.key.SubSystemID == "" {
		err = apierr.New(apierr.KeyNotBound, "this key is not bound to a sub-system, and a Segment write key must be")
	}
	if err == nil && requiresSignature(pr) {
		// Settings are what a browser library loads; a browser cannot sign.
		err = apierr.New(apierr.SignatureRequired, "this key must sign its requests, which Segment's browser library cannot do: use a key without requireSignature in the browser")
	}
	if err != nil {
		return reject(err, 0)
	}
	rs.partnerID = pr.partner.ID
	// Where the browser reached this edge: behind a trusted proxy, the
	// host and scheme it forwarded.
	proto, host := "http", r.Host
	if r.TLS != nil {
		proto = "https"
	}
	if s.fromTrustedProxy(r) {
		if r.Header.Get("X-Forwarded-Proto") == "https" {
			proto = "https"
		}
		if fh := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Host"), ",")[0]); fh != "" {
			host = fh
		}
	}
	w.Header().Set("Cache-Control", "private, max-age=60")
	return reply{status: http.StatusOK, bare: true, data: segmentSettingsOf(p.ByName("writeKey"), host+"/v1", proto)}, nil
}

// segmentSettingsDoc is the shape of the settings answer, for the document.
type segmentSettingsDoc struct {
	Integrations         map[string]map[string]string `json:"integrations"`
	Plan                 map[string]any               `json:"plan"`
	AnalyticsNextEnabled bool                         `json:"analyticsNextEnabled"`
	RemotePlugins        []any                        `json:"remotePlugins"`
}

func segmentSettingsOf(writeKey, apiHost, proto string) map[string]any {
	enabled := map[string]any{"__default": map[string]any{"enabled": true}}
	return map[string]any{
		"integrations": map[string]any{"Segment.io": map[string]any{
			"apiKey": writeKey, "apiHost": apiHost, "protocol": proto,
		}},
		"plan":                 map[string]any{"track": enabled, "identify": enabled, "group": enabled},
		"edgeFunction":         map[string]any{},
		"analyticsNextEnabled": true,
		"middlewareSettings":   map[string]any{},
		"enabledMiddleware":    map[string]any{},
		"metrics":              map[string]any{"sampleRate": 0},
		"remotePlugins":        []any{},
	}
}

// fromTrustedProxy tells whether the peer is one of the trusted proxies.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	return err == nil && s.trusted(peer.Unmap())
}

// nesting is the deepest nesting of objects and arrays in a JSON text.
func nesting(b []byte) int {
	depth, most := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > most {
				most = depth
			}
		case '}', ']':
			depth--
		}
	}
	return most
}
