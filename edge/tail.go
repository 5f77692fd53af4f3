package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/signing"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// The live tail: events as workers store them, streamed to a browser as
// server-sent events. Bounded three ways: streams per edge, events a second
// per stream (the rest are counted, not sent), and messages waiting per
// stream (a slow reader loses the oldest, counted too).
const (
	tailMaxStreams  = 64 // streams of partner keys on one edge
	tailMaxAdmin    = 16 // and of the admin, apart, so partners cannot take them all
	tailPerPartner  = 8  // streams of one partner's keys on one edge
	tailRate        = 50 // events a second per stream
	tailBurst       = 100
	tailQueue       = 16      // worker messages waiting per stream
	tailQueueBytes  = 1 << 20 // and their bytes: a reader that does not read costs at most this
	tailKeepalive   = 15 * time.Second
	tailWriteLimit  = 10 * time.Second // a reader that takes no bytes for this long is dropped
	tailRecheck     = 5 * time.Second  // the credential is checked again this often: a revoked key's stream ends
	tailMaxLifetime = time.Hour        // then the client reconnects, and is checked from scratch
)

var (
	mTailStreams = promauto.NewGauge(prometheus.GaugeOpts{Name: "trk_edge_tail_streams",
		Help: "Live tail streams open on this edge."})
	mTailOmitted = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_tail_omitted_events_total",
		Help: "Stored events the live tail did not send, past its rate or its queue (counted to the reader)."})
)

// tailStreams counts the open streams of an edge: the admin's apart from
// the partners', and each partner's.
type tailStreams struct {
	mu         sync.Mutex
	admin, all int
	partner    map[string]int
}

func (t *tailStreams) acquire(admin bool, partner string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case admin && t.admin >= tailMaxAdmin:
		return apierr.New(apierr.Overloaded, "this edge serves as many admin live tails as it may (%d); close one or retry later", tailMaxAdmin)
	case admin:
		t.admin++
	case t.partner[partner] >= tailPerPartner:
		return apierr.New(apierr.Overloaded, "this partner has as many live tails open on this edge as it may (%d); close one", tailPerPartner)
	case t.all >= tailMaxStreams:
		return apierr.New(apierr.Overloaded, "this edge serves as many live tails as it may (%d); retry later", tailMaxStreams)
	default:
		if t.partner == nil {
			t.partner = map[string]int{}
		}
		t.all++
		t.partner[partner]++
	}
	mTailStreams.Inc()
	return nil
}

func (t *tailStreams) release(admin bool, partner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if admin {
		t.admin--
	} else {
		t.all--
		if t.partner[partner]--; t.partner[partner] <= 0 {
			delete(t.partner, partner)
		}
	}
	mTailStreams.Dec()
}

func (s *Server) tailRoutes() {
	s.handle(http.MethodGet, "/api/v1/reports/partners/:id/tail", s.tail)
	s.handle(http.MethodGet, "/api/v1/session", s.session)
}

// Session is who a credential is: the admin, or a partner's report key.
type Session struct {
	Role      string  `json:"role"`      // admin or reports
	PartnerID *string `json:"partnerId"` // a report key's partner; null for the admin
}

// session tells the console who signed in: an admin token, or a report
// key (confined to its partner's reports).
func (s *Server) session(_ http.ResponseWriter, r *http.Request, _ httprouter.Params, rs *reqState) (reply, error) {
	confined, _, err := s.reportCredential(r.Context(), r)
	if err != nil {
		return reply{}, err
	}
	if confined == "" {
		return ok(Session{Role: "admin"}, ""), nil
	}
	rs.partnerID = confined
	return ok(Session{Role: "reports", PartnerID: &confined}, ""), nil
}

// tail streams a partner's events as they are stored, as server-sent
// events: "stored" (one event), "omitted" (how many were not sent) and
// keepalive comments. Authorised like the partner's reports.
func (s *Server) tail(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
	confined, bound, _, err := s.reportKey(r.Context(), r)
	if err != nil {
		return reply{}, err
	}
	partner := p.ByName("id")
	if !tenant.ValidID(partner) || (confined != "" && confined != partner) {
		return reply{}, apierr.New(apierr.PartnerNotFound, "partner not found: %s is not a partner id", quote(partner))
	}
	rs.partnerID = partner
	admin := confined == ""
	if admin {
		// As the admin's report of an unknown partner answers 404, so does its tail.
		if _, err := s.cache.Partner(r.Context(), partner); err != nil {
			return reply{}, err
		}
	}
	qv := r.URL.Query()
	for k := range qv {
		if k != "subSystemId" {
			return reply{}, badParam(k, "is not a parameter of the live tail (subSystemId is)")
		}
	}
	sub := qv.Get("subSystemId")
	if sub != "" && !tenant.ValidID(sub) {
		return reply{}, badParam("subSystemId", "must be a sub-system id (a UUID)")
	}
	if err := boundTo(bound, sub); err != nil {
		return reply{}, err
	}
	if err := s.tails.acquire(admin, partner); err != nil {
		return reply{}, err
	}
	defer s.tails.release(admin, partner)

	queue := make(chan *nats.Msg, tailQueue)
	var dropped, queued atomic.Int64
	nsub, err := s.nc.Subscribe(subject.Tail(partner), func(m *nats.Msg) {
		if queued.Load()+int64(len(m.Data)) <= tailQueueBytes {
			select {
			case queue <- m:
				queued.Add(int64(len(m.Data)))
				return
			default:
			}
		}
		var b event.TailBatch
		if json.Unmarshal(m.Data, &b) == nil {
			dropped.Add(int64(len(b.Events) + b.Omitted))
		}
	})
	if err != nil {
		return reply{}, apierr.New(apierr.Unavailable, "the live tail cannot listen to the bus: %v", err)
	}
	defer nsub.Unsubscribe()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h["Cache-Control"] = hvNoStore
	h.Set("X-Accel-Buffering", "no") // a proxy must not hold the stream back
	w.WriteHeader(http.StatusOK)
	send := func(chunk string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(tailWriteLimit))
		if _, err := fmt.Fprint(w, chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(": live tail of stored events\n\n") {
		return reply{status: http.StatusOK, streamed: true}, nil
	}

	tokens, last := float64(tailBurst), time.Now()
	var omitted int64
	keepalive := time.NewTicker(tailKeepalive)
	defer keepalive.Stop()
	recheck := time.NewTicker(tailRecheck)
	defer recheck.Stop()
	lifetime := time.NewTimer(tailMaxLifetime)
	defer lifetime.Stop()
	done := reply{status: http.StatusOK, streamed: true}
	for {
		select {
		case <-r.Context().Done():
			return done, nil
		case <-s.closing:
			send("event: closing\ndata: {}\n\n") // the edge stops: reconnect to another
			return done, nil
		case <-lifetime.C:
			send("event: closing\ndata: {}\n\n") // reconnect: the credential is checked from scratch
			return done, nil
		case <-recheck.C:
			// A key revoked, a partner disabled or an admin token
			// rotated out ends the stream, as it would a new request.
			c, b, err := s.stillAllowed(r.Context(), r)
			if err != nil && apierr.From(err).Code.Status() >= 500 {
				continue // the registry is slow or away: no verdict; the stream goes on, checked again soon
			}
			if err == nil {
				err = boundTo(b, sub) // a key bound since, or to another sub-system
			}
			if err != nil || (c != "" && c != partner) {
				ae := apierr.From(err)
				if err == nil {
					ae = apierr.New(apierr.PartnerNotFound, "partner not found")
				}
				data, _ := json.Marshal(ae)
				send("event: refused\ndata: " + string(data) + "\n\n")
				return done, nil
			}
		case <-keepalive.C:
			if !send(": keepalive\n\n") {
				return done, nil
			}
		case m := <-queue:
			queued.Add(-int64(len(m.Data)))
			var b event.TailBatch
			if json.Unmarshal(m.Data, &b) != nil {
				continue
			}
			now := time.Now()
			tokens = min(float64(tailBurst), tokens+now.Sub(last).Seconds()*tailRate)
			last = now
			omitted += int64(b.Omitted) + dropped.Swap(0)
			var out []byte
			for _, e := range b.Events {
				if sub != "" && e.SubSystemID != sub {
					continue
				}
				if tokens < 1 {
					omitted++
					continue
				}
				tokens--
				data, _ := json.Marshal(tailed{TailEvent: e, StoredAt: b.StoredAt})
				out = fmt.Appendf(out, "event: stored\ndata: %s\n\n", data)
			}
			if omitted > 0 { // with a sub-system filter, an upper bound: it counts the partner's other events too
				mTailOmitted.Add(float64(omitted))
				out = fmt.Appendf(out, "event: omitted\ndata: {\"omitted\":%d}\n\n", omitted)
				omitted = 0
			}
			if len(out) > 0 && !send(string(out)) {
				return done, nil
			}
		}
	}
}

// stillAllowed checks a stream's credential again, as reportCredential
// does, but not the signature itself: a signed request's timestamp and
// nonce were checked when the stream opened, and would not pass twice. A
// key that has come to require signing ends an unsigned stream.
func (s *Server) stillAllowed(ctx context.Context, r *http.Request) (partner, sub string, _ error) {
	if r.Header.Get("X-Api-Key") != "" && r.Header.Get("Authorization") == "" && r.Header.Get("X-Admin-Token") == "" {
		pr, err := s.authenticate(ctx, r)
		if err != nil {
			return "", "", err
		}
		if err := needScope(pr, tenant.ScopeReport); err != nil {
			return "", "", err
		}
		if requiresSignature(pr) && r.Header.Get(signing.HeaderSignature) == "" {
			return "", "", apierr.New(apierr.SignatureRequired, "this key now requires signed requests: open the tail again, signed")
		}
		return pr.partner.ID, pr.key.SubSystemID, nil
	}
	return "", "", s.requireAdmin(r)
}

// tailed is one "stored" event of the stream.
type tailed struct {
	event.TailEvent
	StoredAt time.Time `json:"storedAt"`
}
