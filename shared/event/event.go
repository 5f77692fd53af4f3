// Package event is the wire format of a tracking event, from the HTTP body a
// partner app sends to the message a worker stores.
package event

import (
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
