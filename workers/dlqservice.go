package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/keyauth"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// ServeDeadLetters registers the dead-letter service on nc: list, replay and
// discard a partner's dead letters. Every worker process serves it in one
// queue group. The events are a partner's data, so each operation checks
// the credential the edge forwards itself: the edge's NATS role alone may
// not read, replay or discard dead letters. Replay and discard change the
// stream: the admin's only. List is the admin's, or the partner's own with
// a key of the report scope (checked by keys with the registry; nil: the
// admin's only), so a client can see what was not stored and why (an id
// taken by another body, above all); a key bound to one sub-system lists
// that sub-system's.
func ServeDeadLetters(nc *nats.Conn, js jetstream.JetStream, admin *admintoken.Set, keys *keyauth.Verifier, log zerolog.Logger) (micro.Service, error) {
	if admin == nil {
		return nil, errors.New("workers: no admin tokens: the dead-letter service would be open to any NATS client")
	}
	checkAdmin := func(h nats.Header) error { return admin.Check(h.Get(natsx.HeaderAdminToken)) }
	// A key is checked in the handler (it asks the registry, under the
	// request's deadline); without one, as the admin's.
	checkList := func(h nats.Header) error {
		if h.Get(natsx.HeaderAdminToken) == "" && h.Get(natsx.HeaderAPIKey) != "" && keys != nil {
			return nil
		}
		return checkAdmin(h)
	}
	svc, err := micro.AddService(nc, micro.Config{Name: dlqapi.Service, Version: "1.0.0",
		Description: "dead letters: events that could not be stored, with their reason"})
	if err != nil {
		return nil, fmt.Errorf("workers: add dead-letter service: %w", err)
	}
	d := &deadLetters{js: js, budget: natsx.ReplyBudget(nc)}
	pool := natsx.NewPool(nc, dlqInFlight)
	g := svc.AddGroup(dlqapi.Prefix)
	list := func(ctx context.Context, req dlqapi.Request) (any, error) {
		// Nothing past the caller's wait: not the key's check (a registry
		// that does not answer), nor the reads.
		if dl, ok := natsx.CallerDeadline(ctx); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
		h := natsx.RequestHeaders(ctx)
		if h.Get(natsx.HeaderAdminToken) != "" {
			return d.list(ctx, req, partnerFilter(req.PartnerID))
		}
		c, err := keys.Check(ctx, h.Get(natsx.HeaderAPIKey), tenant.ScopeReport)
		if err != nil {
			return nil, err
		}
		if c.Partner != req.PartnerID {
			return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
		}
		filter := partnerFilter(req.PartnerID)
		if c.SubSystem != "" {
			filter = subject.DeadLetter(req.PartnerID, c.SubSystem)
		}
		return d.listForPartner(ctx, req, filter)
	}
	for op, fn := range map[string]func(context.Context, dlqapi.Request) (any, error){
		dlqapi.List: list, dlqapi.Replay: d.replay, dlqapi.Discard: d.discard,
	} {
		h := natsx.Handler(log, "workers", "deadletters."+op, 30*time.Second, func(ctx context.Context, data []byte) (any, error) {
			var req dlqapi.Request
			if err := json.Unmarshal(data, &req); err != nil {
				return nil, apierr.New(apierr.InvalidJSON, "bad request: %v", err)
			}
			if !tenant.ValidID(req.PartnerID) {
				return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
			}
			return fn(ctx, req)
		})
		// Dead letters are a partner's events: answers are sealed under the
		// forwarded credential, as the registry's admin answers and the
		// reports are.
		if op == dlqapi.List {
			h = natsx.Guard(log, "deadletters."+op, checkList, natsx.SealReplies(natsx.CallerReplyKey, h))
		} else {
			h = natsx.Guard(log, "deadletters."+op, checkAdmin, natsx.SealReplies(natsx.AdminReplyKey, h))
		}
		if err := g.AddEndpoint(op, pool.Wrap(h)); err != nil {
			return nil, fmt.Errorf("workers: add endpoint %s: %w", op, err)
		}
	}
	return natsx.Serving(svc, 10*time.Second, pool), nil
}

// dlqInFlight bounds the dead-letter requests a worker process serves at
// once, each on its own goroutine (natsx.Pool): micro serves an endpoint
// one request at a time, so one partner listing in a loop would make every
// other caller wait. Past it a request is refused (overloaded, 503).
const dlqInFlight = 32

type deadLetters struct {
	js     jetstream.JetStream
	budget int // bytes of letters a page holds at most, as encoded (natsx.ReplyBudget)

	mu     sync.Mutex
	seqKey []byte // the permutation of sequences shown to partners (seqs.go)
}

func (d *deadLetters) stream(ctx context.Context) (jetstream.Stream, error) {
	s, err := d.js.Stream(ctx, subject.DeadLetterStream)
	if err != nil {
		return nil, apierr.New(apierr.Unavailable, "the dead-letter stream is unavailable")
	}
	return s, nil
}

func partnerFilter(partnerID string) string { return subject.DeadLetterPrefix + partnerID + ".>" }

// belongs tells whether a dead letter's subject is the partner's.
func belongs(subj, partnerID string) bool {
	return strings.HasPrefix(subj, subject.DeadLetterPrefix+partnerID+".")
}

// list lists the dead letters under filter (a partner's, or one of its
// sub-systems').
func (d *deadLetters) list(ctx context.Context, req dlqapi.Request, filter string) (any, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 || limit > dlqapi.MaxPage {
		limit = 50
	}
	page := dlqapi.Page{Items: []dlqapi.Letter{}}
	if req.After == math.MaxUint64 {
		return page, nil // nothing follows the last sequence (After+1 would wrap to the first)
	}
	seq, size := req.After+1, 0
	for len(page.Items) < limit {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return page, nil
		} else if err != nil {
			return nil, err
		}
		l := letter(m)
		n := encodedSize(l) // as the answer encodes it (escaped for HTML: up to 6 bytes a byte)
		if size+n > d.budget {
			if len(page.Items) > 0 {
				page.Next = page.Items[len(page.Items)-1].Seq // the rest on the next page
				return page, nil
			}
			// One letter larger than a page: listed without its body,
			// which replay still publishes whole.
			l.Event, _ = json.Marshal(fmt.Sprintf("(an event of %d bytes, too large to list: replay or discard it by seq)", len(l.Event)))
			n = encodedSize(l)
		}
		size += n
		page.Items = append(page.Items, l)
		seq = m.Sequence + 1
	}
	// One more look tells whether there is a next page.
	if _, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter)); err == nil {
		page.Next = seq - 1
	}
	return page, nil
}

// encodedSize is l's size in a page as sent.
func encodedSize(l dlqapi.Letter) int {
	b, _ := json.Marshal(l)
	return len(b) + 1
}

func letter(m *jetstream.RawStreamMsg) dlqapi.Letter {
	h := nats.Header(m.Header)
	l := dlqapi.Letter{Seq: m.Sequence, Reason: h.Get(subject.HeaderReason), OriginalSubject: h.Get(HeaderOriginalSubject)}
	l.OriginalSeq, _ = strconv.ParseUint(h.Get(HeaderOriginalSeq), 10, 64)
	l.DeadAt, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDeadAt))
	if l.DeadAt.IsZero() {
		l.DeadAt = m.Time.UTC()
	}
	if parts := strings.Split(m.Subject, "."); len(parts) >= 5 {
		l.SubSystemID = parts[4]
	}
	if json.Valid(m.Data) {
		l.Event = json.RawMessage(m.Data)
	} else {
		l.Event, _ = json.Marshal(string(m.Data))
	}
	return l
}

// get reads one dead letter of the partner.
func (d *deadLetters) get(ctx context.Context, s jetstream.Stream, partnerID string, seq uint64) (*jetstream.RawStreamMsg, error) {
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && !belongs(m.Subject, partnerID)) {
		return nil, apierr.New(apierr.NotFound, "dead letter %d not found for this partner", seq)
	}
	return m, err
}

func (d *deadLetters) replay(ctx context.Context, req dlqapi.Request) (any, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	res := dlqapi.ReplayResult{Replayed: []uint64{}}
	seqs := req.Seqs
	if len(seqs) > dlqapi.MaxReplay {
		return nil, apierr.Invalid(apierr.FieldError{Field: "seqs", Message: fmt.Sprintf("at most %d per request", dlqapi.MaxReplay)})
	}
	if len(seqs) == 0 {
		for seq := uint64(1); len(seqs) <= dlqapi.MaxReplay; {
			m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(partnerFilter(req.PartnerID)))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			} else if err != nil {
				return nil, err
			}
			seqs = append(seqs, m.Sequence)
			seq = m.Sequence + 1
		}
		if len(seqs) > dlqapi.MaxReplay {
			seqs, res.More = seqs[:dlqapi.MaxReplay], true
		}
	}
	for _, seq := range seqs {
		m, err := d.get(ctx, s, req.PartnerID, seq)
		if err != nil {
			return nil, err
		}
		orig := nats.Header(m.Header).Get(HeaderOriginalSubject)
		if !strings.HasPrefix(orig, subject.EventsPrefix+req.PartnerID+".") {
			orig = subject.EventsPrefix + strings.TrimPrefix(m.Subject, subject.DeadLetterPrefix)
		}
		out := nats.NewMsg(orig)
		out.Data = m.Data
		for k, v := range m.Header {
			if !strings.HasPrefix(k, "Trk-") && !strings.HasPrefix(k, "Nats-") {
				out.Header[k] = v
			}
		}
		// A fresh, unguessable id: nobody can make JetStream drop the
		// replay as a duplicate (storage still stores the event once).
		out.Header.Set(subject.HeaderMsgID, "replay:"+nuid.Next())
		ack, err := d.js.PublishMsg(ctx, out)
		if err == nil && ack.Duplicate {
			err = errors.New("taken for a duplicate")
		}
		if err != nil {
			return nil, apierr.New(apierr.Unavailable, "the event stream refused the replay of %d: %v; nothing after it was replayed", seq, err)
		}
		if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, err
		}
		res.Replayed = append(res.Replayed, seq)
	}
	return res, nil
}

func (d *deadLetters) discard(ctx context.Context, req dlqapi.Request) (any, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := d.get(ctx, s, req.PartnerID, req.Seq); err != nil {
		return nil, err
	}
	if err := s.DeleteMsg(ctx, req.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, err
	}
	return map[string]uint64{"discarded": req.Seq}, nil
}
