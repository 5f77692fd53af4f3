package natsx

import "github.com/nats-io/nats.go"

// MaxReplyBytes bounds what a service puts in one reply of a listing (a
// page of events or dead letters): the bus refuses a message past its
// max_payload (1 MiB by default, 4 MiB in nats.conf), and a reply refused
// leaves its caller waiting for its timeout. A page holds what fits, at
// least one item, and says where the rest goes on.
const MaxReplyBytes = 768 << 10

// ReplyMargin is left of the bus's largest message for a page's own
// fields, its cursor and the reply's sealing.
const ReplyMargin = 64 << 10

// ReplyBudget is MaxReplyBytes, or less on a bus whose largest message is
// smaller (a server's max_payload set below 1 MiB); nc may be nil (no bus).
func ReplyBudget(nc *nats.Conn) int {
	limit := MaxReplyBytes
	if nc != nil {
		if mp := int(nc.MaxPayload()) - ReplyMargin; mp < limit {
			limit = max(mp, ReplyMargin)
		}
	}
	return limit
}
