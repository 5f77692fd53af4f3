// Package event is the wire format of a tracking event, from the HTTP body a
// partner app sends to the message a worker stores.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash"
	"sync"
	"time"
)

// Event is an accepted event as published to JetStream and stored.
// ID is unique within the partner: the client's own id or a UUIDv7 made by the edge.
type Event struct {
	ID            string          `json:"id"`
	PartnerID     string          `json:"partnerId"`
	SubSystemID   string          `json:"subSystemId"`
	SubSystemCode string          `json:"subSystemCode,omitempty"`
	EventType     string          `json:"eventType"`
	Timestamp     time.Time       `json:"timestamp"`
	ReceivedAt    time.Time       `json:"receivedAt"`
	UserID        string          `json:"userId,omitempty"`
	AnonymousID   string          `json:"anonymousId,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	IP            string          `json:"ip,omitempty"`
	UserAgent     string          `json:"userAgent,omitempty"`
	KeyID         string          `json:"keyId,omitempty"`

	// Retention is set by the worker from the partner's setting, never sent:
	// storage keeps the event (and what counts it) this long; 0 means the default.
	Retention time.Duration `json:"-"`
}

// MsgID is the JetStream de-duplication id: event ids are unique per partner only.
func (e *Event) MsgID() string { return e.PartnerID + ":" + e.ID }

// Digest identifies what an event says, so that storage can tell a retry of
// an event (same id, same digest: a duplicate) from another event reusing
// its id (a conflict). It covers the sub-system, type, user ids and
// metadata. The timestamp is left out on purpose: a client that retries an
// event without a timestamp of its own gets a new one from the edge, and
// that retry is still the same event (the first timestamp stands).
func (e *Event) Digest() [16]byte {
	d := digests.Get().(*digester)
	defer digests.Put(d)
	d.h.Reset()
	meta := []byte(e.Metadata)
	// The same metadata spaced differently is the same event.
	if bytes.IndexAny(meta, " \t\r\n") >= 0 {
		d.buf.Reset()
		if json.Compact(&d.buf, meta) == nil {
			meta = d.buf.Bytes()
		}
	}
	for _, f := range [...]string{e.SubSystemID, e.EventType, e.UserID, e.AnonymousID} {
		d.field(len(f))
		d.scratch = append(d.scratch[:0], f...)
		d.h.Write(d.scratch)
	}
	d.field(len(meta))
	d.h.Write(meta)
	var out [16]byte
	copy(out[:], d.h.Sum(d.sum[:0]))
	return out
}

// digester is Digest's reusable state: a hash and scratch space, so that a
// digest costs no allocation (the edge takes one per event).
type digester struct {
	h       hash.Hash
	buf     bytes.Buffer
	scratch []byte
	n       [4]byte
	sum     [sha256.Size]byte
}

func (d *digester) field(n int) {
	binary.BigEndian.PutUint32(d.n[:], uint32(n))
	d.h.Write(d.n[:])
}

var digests = sync.Pool{New: func() any { return &digester{h: sha256.New(), scratch: make([]byte, 0, 256)} }}

// Input is one event as a partner app sends it.
type Input struct {
	ID            string          `json:"id"`
	SubSystemCode string          `json:"subSystemCode"`
	EventType     string          `json:"eventType"`
	Metadata      json.RawMessage `json:"metadata"`
	Timestamp     *time.Time      `json:"timestamp"`
	UserID        string          `json:"userId"`
	AnonymousID   string          `json:"anonymousId"`
}

// Batch is the bulk request body.
type Batch struct {
	Events []json.RawMessage `json:"events"`
}
