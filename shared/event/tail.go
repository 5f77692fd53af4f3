package event

import "time"

// TailEvent is what the live tail shows of a stored event: never its
// metadata, IP or user agent.
type TailEvent struct {
	ID          string    `json:"id"`
	SubSystemID string    `json:"subSystemId"`
	EventType   string    `json:"eventType"`
	Timestamp   time.Time `json:"timestamp"`
	UserID      string    `json:"userId,omitempty"`
	AnonymousID string    `json:"anonymousId,omitempty"`
}

// TailBatch is what a worker publishes on subject.Tail after storing a
// batch: at most TailMax of one partner's events; Omitted counts the rest.
type TailBatch struct {
	StoredAt time.Time   `json:"storedAt"`
	Events   []TailEvent `json:"events"`
	Omitted  int         `json:"omitted,omitempty"`
}

// TailMax bounds the events of one TailBatch: the tail is for watching,
// and an edge shows at most a few dozen a second anyway.
const TailMax = 100
