// Package event is the wire format of a tracking event, from the HTTP body a
// partner app sends to the message a worker stores.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
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
	h := sha256.New()
	meta := []byte(e.Metadata)
	var compact bytes.Buffer // the same metadata spaced differently is the same event
	if json.Compact(&compact, meta) == nil {
		meta = compact.Bytes()
	}
	for _, f := range [][]byte{[]byte(e.SubSystemID), []byte(e.EventType), []byte(e.UserID), []byte(e.AnonymousID), meta} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var d [16]byte
	copy(d[:], h.Sum(nil))
	return d
}

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
