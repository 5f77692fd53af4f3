// Package groupcommit publishes events to JetStream in groups, so that one
// disk sync acknowledges many of them.
//
// With fsync on (the default), JetStream syncs once per message it stores,
// and a stream takes only a few thousand messages a second however fast the
// edge is. An atomic batch (ADR-50) is stored with one sync for the whole
// batch, but costs a couple of milliseconds to set up. So the publisher
// sends what requests hand it one by one while the bus keeps up, and when
// requests arrive faster than the bus acknowledges, the ones waiting for a
// free slot go together as one atomic batch: classic group commit, adaptive
// to load, with no timer that delays a lone event.
//
// Every message keeps its own Nats-Msg-Id, so when a batch fails for any
// reason but a full stream (a duplicate inside it, too many batches in
// flight, a stream that does not allow atomic batches) its messages are
// published again one by one, each answered on its own, and an event the
// batch may have stored is counted once.
package groupcommit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	mBatches = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_publish_batches_total",
		Help: "Atomic batches committed to JetStream (one disk sync each)."})
	mBatched = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_publish_batched_events_total",
		Help: "Events committed inside atomic batches; the rest were published one by one."})
	mFallbacks = promauto.NewCounter(prometheus.CounterOpts{Name: "trk_edge_publish_batch_fallbacks_total",
		Help: "Atomic batches refused (a duplicate inside, too many in flight, atomic batches disabled) and published again one by one."})
)

// Ack is the outcome of one message.
type Ack struct {
	Duplicate bool
	// Err, when set, is ErrNotSent (the message never left: retry later),
	// a *jetstream.APIError (the stream refused it), or another error (no
	// answer came: the message may be stored).
	Err error
}

// ErrNotSent wraps the error of a message that never reached the server.
var ErrNotSent = errors.New("groupcommit: not sent")

func notSent(err error) error { return fmt.Errorf("%w: %w", ErrNotSent, err) }

// Config tunes the publisher; zero values take the defaults.
type Config struct {
	// Slots bounds the groups in flight at once. While all are busy,
	// requests queue up and go out together.
	Slots int
	// MinBatch is the smallest group sent as an atomic batch: below it,
	// one-by-one publishing is cheaper than a batch's set-up.
	MinBatch int
	// MaxBatch bounds one atomic batch (the server's default limit is 1,000).
	MaxBatch int
	// Queue bounds the requests waiting for a slot.
	Queue int
	// Off publishes every message on its own: no atomic batches.
	Off bool
}

func (c Config) withDefaults() Config {
	if c.Slots <= 0 {
		c.Slots = 2
	}
	if c.MinBatch <= 0 {
		c.MinBatch = 16
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 500
	}
	if c.Queue <= 0 {
		c.Queue = 8192
	}
	return c
}

// unit is what one request hands over: its messages go in one group.
type unit struct {
	ctx  context.Context
	msgs []*nats.Msg
	acks []Ack
	done chan struct{}
}

// Publisher groups publishes. Run must be running for Publish to return
// anything but its context's error.
type Publisher struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	queue chan *unit
	slots chan struct{}
	// noAtomicUntil (Unix nanoseconds): while the stream refuses atomic
	// batches (an older server, a stream provisioned without them), publish
	// one by one, trying a batch again now and then.
	noAtomicUntil atomic.Int64
	prefix        string
	seq           atomic.Uint64
	seqs          [][]string // seqs[k] is the Nats-Batch-Sequence value k+1, made once

	batches, batched, fallbacks atomic.Uint64
}

// New makes a publisher on nc; js publishes the one-by-one messages.
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream) *Publisher {
	cfg = cfg.withDefaults()
	p := &Publisher{cfg: cfg, nc: nc, js: js, queue: make(chan *unit, cfg.Queue),
		slots: make(chan struct{}, cfg.Slots), prefix: nuid.Next(), seqs: make([][]string, cfg.MaxBatch)}
	for k := range p.seqs {
		p.seqs[k] = []string{strconv.Itoa(k + 1)}
	}
	if cfg.Off {
		p.noAtomicUntil.Store(math.MaxInt64)
	}
	return p
}

// Stats are counts since start: atomic batches committed, the messages in
// them, and batches that fell back to one-by-one publishing.
func (p *Publisher) Stats() (batches, batched, fallbacks uint64) {
	return p.batches.Load(), p.batched.Load(), p.fallbacks.Load()
}

// Publish stores msgs (each with its Nats-Msg-Id set) and returns one Ack
// per message, in order. Messages of one call are never split across
// groups unless they exceed MaxBatch. When ctx ends first every message is
// answered with ctx's error, though any of them may still be stored.
func (p *Publisher) Publish(ctx context.Context, msgs []*nats.Msg) []Ack {
	u := &unit{ctx: ctx, msgs: msgs, acks: make([]Ack, len(msgs)), done: make(chan struct{})}
	// A fresh slice: the unit's own may still be written by its group.
	fail := func(err error) []Ack {
		acks := make([]Ack, len(msgs))
		for i := range acks {
			acks[i] = Ack{Err: err}
		}
		return acks
	}
	select {
	case p.queue <- u:
	case <-ctx.Done():
		return fail(notSent(ctx.Err()))
	}
	select {
	case <-u.done:
		return u.acks
	case <-ctx.Done():
		// An answer that arrived as the deadline passed still counts: a
		// stored event is never reported rejected.
		select {
		case <-u.done:
			return u.acks
		default:
			return fail(ctx.Err())
		}
	}
}

// Run sends groups until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	var next *unit
	for {
		if next == nil {
			select {
			case next = <-p.queue:
			case <-ctx.Done():
				return
			}
		}
		// Wait for a slot first: meanwhile more requests queue up, and
		// they all leave together.
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		group, n := []*unit{next}, len(next.msgs)
		next = nil
	gather:
		for n < p.cfg.MaxBatch {
			select {
			case u := <-p.queue:
				if n+len(u.msgs) > p.cfg.MaxBatch {
					next = u
					break gather
				}
				group, n = append(group, u), n+len(u.msgs)
			default:
				break gather
			}
		}
		go func() {
			defer func() { <-p.slots }()
			p.commit(group, n)
		}()
	}
}

// ref points at one message of a group.
type ref struct {
	u *unit
	i int
}

func (p *Publisher) commit(group []*unit, n int) {
	defer func() {
		for _, u := range group {
			close(u.done)
		}
	}()
	refs := make([]ref, 0, n)
	for _, u := range group {
		if err := u.ctx.Err(); err != nil { // its request gave up waiting: publish nothing
			for i := range u.acks {
				u.acks[i] = Ack{Err: notSent(err)}
			}
			continue
		}
		for i := range u.msgs {
			refs = append(refs, ref{u, i})
		}
	}
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), p.cfg.MaxBatch)]
		refs = refs[len(chunk):]
		if len(chunk) < p.cfg.MinBatch || time.Now().UnixNano() < p.noAtomicUntil.Load() {
			p.oneByOne(chunk)
			continue
		}
		err := p.atomic(chunk)
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			p.batches.Add(1)
			p.batched.Add(uint64(len(chunk)))
			mBatches.Inc()
			mBatched.Add(float64(len(chunk)))
			for _, r := range chunk {
				r.u.acks[r.i] = Ack{}
			}
		case isFull(err), !errors.As(err, &apiErr) && !errors.Is(err, ErrNotSent):
			// A full stream would refuse them one by one too. No answer at
			// all (a timeout, a lost connection) leaves the batch's fate
			// unknown: republishing now would race the batch still being
			// committed, so the clients are told the events may be stored
			// and retry with the same ids (counted once).
			for _, r := range chunk {
				r.u.acks[r.i] = Ack{Err: err}
			}
		default:
			// The server refused the batch, or it never left: nothing of
			// it is stored, so each message goes again on its own.
			if apiErr != nil && apiErr.ErrorCode == errAtomicDisabled {
				p.noAtomicUntil.Store(time.Now().Add(time.Minute).UnixNano())
			}
			p.fallbacks.Add(1)
			mFallbacks.Inc()
			p.oneByOne(chunk)
		}
	}
}

// errAtomicDisabled is JSAtomicPublishDisabledErr.
const errAtomicDisabled jetstream.ErrorCode = 10174

// isFull says the stream refused for lack of room: publishing the same
// messages one by one would only be refused again.
func isFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum") || strings.Contains(apiErr.Description, "resources"))
}

// oneByOne publishes each message on its own and waits for every answer.
func (p *Publisher) oneByOne(refs []ref) {
	futures := make([]jetstream.PubAckFuture, len(refs))
	for k, r := range refs {
		f, err := p.js.PublishMsgAsync(r.u.msgs[r.i])
		if err != nil {
			r.u.acks[r.i] = Ack{Err: notSent(err)}
			continue
		}
		futures[k] = f
	}
	for k, f := range futures {
		if f == nil {
			continue
		}
		r := refs[k]
		select {
		case ack := <-f.Ok():
			r.u.acks[r.i] = Ack{Duplicate: ack.Duplicate}
		case err := <-f.Err():
			r.u.acks[r.i] = Ack{Err: err}
		case <-r.u.ctx.Done():
			r.u.acks[r.i] = Ack{Err: r.u.ctx.Err()}
		}
	}
}

// batchAck is the server's answer to a batch commit.
type batchAck struct {
	Error *jetstream.APIError `json:"error,omitempty"`
	Count int                 `json:"count"`
}

// atomic publishes refs as one atomic batch: every message but the last
// without a reply, the last with the commit header and a reply.
func (p *Publisher) atomic(refs []ref) error {
	id := p.prefix + strconv.FormatUint(p.seq.Add(1), 36)
	// The batch is the publisher's, not one request's: a client that goes
	// away must not abandon the others' events. It waits as long as the
	// most patient request in it.
	rctx, cancel := context.WithDeadline(context.Background(), latestDeadline(refs))
	defer cancel()
	last := len(refs) - 1
	batchID := []string{id}
	// The batch headers go on the messages themselves, and come off again
	// before a fallback publishes them one by one.
	defer func() {
		for _, r := range refs {
			h := r.u.msgs[r.i].Header
			delete(h, hdrBatchID)
			delete(h, hdrBatchSeq)
			delete(h, hdrBatchCommit)
		}
	}()
	for k, r := range refs {
		m := r.u.msgs[r.i]
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header[hdrBatchID] = batchID
		m.Header[hdrBatchSeq] = p.seqs[k]
		if k < last {
			if err := p.nc.PublishMsg(m); err != nil {
				// The commit never goes: the server drops the batch.
				return notSent(fmt.Errorf("groupcommit: batch message: %w", err))
			}
			continue
		}
		m.Header[hdrBatchCommit] = commitOne
		reply, err := p.nc.RequestMsgWithContext(rctx, m)
		if errors.Is(err, nats.ErrNoResponders) { // no stream took it
			return notSent(fmt.Errorf("groupcommit: batch commit: %w", err))
		} else if err != nil {
			return fmt.Errorf("groupcommit: batch commit: %w", err)
		}
		var a batchAck
		if err := json.Unmarshal(reply.Data, &a); err != nil {
			return fmt.Errorf("groupcommit: batch answer: %w", err)
		}
		if a.Error != nil {
			return a.Error
		}
		if a.Count != len(refs) {
			return fmt.Errorf("groupcommit: batch stored %d of %d messages", a.Count, len(refs))
		}
	}
	return nil
}

// latestDeadline is the latest deadline of the requests in refs, or
// defaultWait from now when one has none.
func latestDeadline(refs []ref) time.Time {
	var latest time.Time
	for _, r := range refs {
		d, ok := r.u.ctx.Deadline()
		if !ok {
			return time.Now().Add(defaultWait)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest
}

// defaultWait bounds a batch none of whose requests has a deadline.
const defaultWait = 10 * time.Second

const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

var commitOne = []string{"1"}
