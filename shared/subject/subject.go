// Package subject names every NATS subject and stream the services share.
package subject

const (
	// EventsStream holds accepted events until workers have stored them.
	EventsStream = "EVENTS"
	// EventsPrefix is followed by "<partnerId>.<subSystemId>".
	EventsPrefix = "trk.events."
	EventsAll    = "trk.events.>"

	// DeadLetterStream keeps events that can never be stored, with the reason.
	DeadLetterStream = "EVENTS_DLQ"
	DeadLetterPrefix = "trk.dlq.events."
	DeadLetterAll    = "trk.dlq.events.>"

	// WorkersConsumer is the durable pull consumer every worker process shares.
	WorkersConsumer = "workers"

	// RegistryChangesStream carries registry changes; its stream sequence is
	// the change sequence edges use to notice a missed change.
	RegistryChangesStream = "REGISTRY_CHANGES"
	RegistryChanges       = "trk.registry.changes"

	RegistryService = "registry"
	RegistryPrefix  = "trk.registry"
	ReporterService = "reporter"
	ReporterPrefix  = "trk.report"

	// HeaderReason on a dead letter says why it could not be stored.
	HeaderReason = "Trk-Dead-Reason"
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderFirstWins on an event says that its id, already taken by
	// other content, makes it a duplicate of the stored event, not a dead
	// letter: Segment's rule for messageId, whose libraries may change a
	// message between attempts (a retry gains the userId of an identify).
	HeaderFirstWins = "Trk-Id-First-Wins"
)

// Events is the subject of one partner's sub-system's events.
func Events(partnerID, subSystemID string) string {
	return EventsPrefix + partnerID + "." + subSystemID
}

// DeadLetter is the subject a dead event is kept under.
func DeadLetter(partnerID, subSystemID string) string {
	if partnerID == "" {
		partnerID = "_"
	}
	if subSystemID == "" {
		subSystemID = "_"
	}
	return DeadLetterPrefix + partnerID + "." + subSystemID
}

// TailPrefix is where workers tell what they just stored, per partner
// (core NATS, no stream): the edges' live tail listens there.
const (
	TailPrefix = "trk.tail."
	TailAll    = "trk.tail.>"
)

// Tail is the subject of one partner's just-stored events.
func Tail(partnerID string) string { return TailPrefix + partnerID }

// Registry is the subject of a registry endpoint.
func Registry(op string) string { return RegistryPrefix + "." + op }

// Report is the subject of a reporter endpoint.
func Report(op string) string { return ReporterPrefix + "." + op }

// InboxPrefix is where a NATS user receives its replies. Each user (a
// service role, or a partner's internal service) has its own, and may
// subscribe to nothing else of the kind: a shared _INBOX.> would let any
// credential read every reply on the bus (events delivered to workers,
// reports, partner data).
func InboxPrefix(user string) string { return "_I." + user }
