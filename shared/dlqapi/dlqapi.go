// Package dlqapi is the NATS protocol of the dead-letter service the workers
// serve: list, replay and discard one partner's dead letters.
package dlqapi

import (
	"encoding/json"
	"time"
)

// Operations; each is the endpoint trk.deadletters.<op>.
const (
	List    = "list"
	Replay  = "replay"
	Discard = "discard"

	Service = "deadletters"
	Prefix  = "trk.deadletters"

	// MaxPage bounds one listing; MaxReplay one replay request.
	MaxPage   = 200
	MaxReplay = 1000
)

// Subject is the subject of an operation.
func Subject(op string) string { return Prefix + "." + op }

// Request selects a partner's dead letters. List reads from the sequence
// after After, at most Limit; Replay takes Seqs, or every dead letter of the
// partner (up to MaxReplay) when Seqs is empty; Discard takes one Seq.
type Request struct {
	PartnerID string   `json:"partnerId"`
	After     uint64   `json:"after,omitempty"`
	Limit     int      `json:"limit,omitempty"`
	Seqs      []uint64 `json:"seqs,omitempty"`
	Seq       uint64   `json:"seq,omitempty"`
}

// Letter is one dead letter.
type Letter struct {
	Seq         uint64    `json:"seq"`
	Reason      string    `json:"reason"`
	DeadAt      time.Time `json:"deadAt"`
	SubSystemID string    `json:"subSystemId"`
	// OriginalSubject and OriginalSeq say where in EVENTS it came from.
	OriginalSubject string `json:"originalSubject"`
	OriginalSeq     uint64 `json:"originalSeq,omitempty"`
	// Event is the message as it was published: JSON when it was JSON,
	// else a string.
	Event json.RawMessage `json:"event"`
}

// Page is a listing; Next is the After of the next page (0: no more).
type Page struct {
	Items []Letter `json:"items"`
	Next  uint64   `json:"next,omitempty"`
}

// ReplayResult says what a replay did. Replayed events are back in EVENTS
// (a second failure dead-letters them again, under a new sequence).
type ReplayResult struct {
	Replayed []uint64 `json:"replayed"`
	// More is true when the partner has more dead letters than one replay takes.
	More bool `json:"more"`
}
