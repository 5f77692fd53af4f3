package edge

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// doc describes one route for the OpenAPI document.
type doc struct {
	summary string
	auth    string // none, admin, key, report (admin or a report key)
	body    any    // request body type, or nil
	status  int
	data    any // the envelope's data type
}

// qp is a query parameter.
type qp struct {
	name, typ, desc string
	enum            []string
	bounds          map[string]any // minimum, maximum, default
}

var (
	qFrom      = qp{"from", "string", "start of the range: an RFC 3339 instant, or a date (midnight in tz); default: 30 days before to; at most 3,660 days before to", nil, nil}
	qTo        = qp{"to", "string", "end of the range (exclusive): an RFC 3339 instant, or a date (the whole day, in tz); default: now", nil, nil}
	qStartDate = qp{"startDate", "string", "the reference's name for from (a date)", nil, nil}
	qEndDate   = qp{"endDate", "string", "the reference's name for to (a date, included)", nil, nil}
	// Its default differs by report: one each.
	qSubGranularity     = qp{"granularity", "string", "bucket size of timeSeries, on tz's calendar (weeks start on Monday); at most 1,500 points; default hour", granularities, map[string]any{"default": "hour"}}
	qPartnerGranularity = qp{"granularity", "string", "bucket size of timeSeries, on tz's calendar (weeks start on Monday); at most 1,500 points; default day", granularities, map[string]any{"default": "day"}}
	granularities       = []string{"minute", "hour", "day", "week", "month"}
	qTZ                 = qp{"tz", "string", "IANA time zone of the buckets and dates, e.g. Asia/Ho_Chi_Minh; default UTC", nil, map[string]any{"default": "UTC"}}
	qEventType          = qp{"eventType", "string", "count (or list) this event type only (at most 128 characters, no control characters, as an ingested type; else 400); uniqueUsers are then that type's users (absent over a range from before a Cassandra keyspace was upgraded to keep them); \"$other\" counts the types past a slot's limit, whose users are not kept by type", nil, map[string]any{"maxLength": 128}}
	qSubSystemID        = qp{"subSystemId", "string", "this sub-system of the partner only", nil, nil}
	qTop                = qp{"top", "integer", "entries in topSubSystems and topEventTypes, 1-100; default 10", nil, map[string]any{"minimum": 1, "maximum": 100, "default": 10}}
)

// segmentDocMessage documents a Segment message (segmentMessage reads it).
type segmentDocMessage struct {
	Type              string         `json:"type,omitempty"`
	MessageID         string         `json:"messageId,omitempty"`
	UserID            stringOrNumber `json:"userId,omitempty"`
	AnonymousID       stringOrNumber `json:"anonymousId,omitempty"`
	Event             string         `json:"event,omitempty"`
	Name              string         `json:"name,omitempty"`
	Category          string         `json:"category,omitempty"`
	GroupID           string         `json:"groupId,omitempty"`
	PreviousID        string         `json:"previousId,omitempty"`
	Properties        map[string]any `json:"properties,omitempty"`
	Traits            map[string]any `json:"traits,omitempty"`
	Context           map[string]any `json:"context,omitempty"`
	Integrations      map[string]any `json:"integrations,omitempty"`
	Timestamp         *time.Time     `json:"timestamp,omitempty"`
	OriginalTimestamp *time.Time     `json:"originalTimestamp,omitempty"`
	SentAt            *time.Time     `json:"sentAt,omitempty"`
	WriteKey          string         `json:"writeKey,omitempty"`
}

type segmentDocBatch struct {
	Batch        []segmentDocMessage `json:"batch"`
	WriteKey     string              `json:"writeKey,omitempty"`
	SentAt       *time.Time          `json:"sentAt,omitempty"`
	Context      map[string]any      `json:"context,omitempty"`
	Integrations map[string]any      `json:"integrations,omitempty"`
}

type bulkBody struct {
	Events []event.Input `json:"events"`
}

type keyBody struct {
	Name             string     `json:"name"`
	ExpiredAt        *time.Time `json:"expiredAt,omitempty"`
	Scopes           []string   `json:"scopes,omitempty"`
	SubSystemID      string     `json:"subSystemId,omitempty"`
	RateLimit        int        `json:"rateLimit,omitempty"`
	RequireSignature bool       `json:"requireSignature,omitempty"`
	GraceSeconds     int        `json:"graceSeconds,omitempty"`
}

type partnerBody struct {
	Code             string `json:"code"`
	Name             string `json:"name"`
	Status           string `json:"status,omitempty"`
	RetentionDays    int    `json:"retentionDays,omitempty"`
	RateLimit        int    `json:"rateLimit,omitempty"`
	RequireSignature bool   `json:"requireSignature,omitempty"`
}

type subSystemBody struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Status string `json:"status,omitempty"`
}

// docs documents every public route; TestOpenAPI fails if a route lacks one.
var docs = map[string]doc{
	"GET /api/v1/health":              {"Liveness", "none", nil, 200, map[string]string{}},
	"GET /api/v1/health/ready":        {"Readiness for a load balancer: what ingest needs (NATS and the events stream); 503 with the failing check", "none", nil, 200, map[string]any{}},
	"GET /api/v1/health/dependencies": {"Every dependency's state (NATS, the events stream, registry, reporter) and what works without it; always 200", "none", nil, 200, map[string]any{}},
	"POST /api/v1/tracking":           {"Send one event; 202 once JetStream has it", "key", event.Input{}, 202, itemResult{}},
	"POST /api/v1/tracking/bulk": {"Send up to 500 events ({events:[…]} or a bare array); per-item results in order", "key",
		bulkBody{}, 202, bulkResult{}},
	"POST /api/v1/tracking/events":                     {"Alias of /tracking/bulk (the path of the reference's SDK)", "key", bulkBody{}, 202, bulkResult{}},
	"POST /v1/track":                                   {"Segment-compatible track call (event = the event type); 200 once queued", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/identify":                                {"Segment-compatible identify call (event type $identify)", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/page":                                    {"Segment-compatible page call (event type $page)", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/screen":                                  {"Segment-compatible screen call (event type $screen)", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/group":                                   {"Segment-compatible group call (event type $group)", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/alias":                                   {"Segment-compatible alias call (event type $alias)", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/batch":                                   {"Segment-compatible batch (at most 500 KB, 32 KB a message); messages refused for their content are listed in data.results, a 5xx asks for the whole batch again", "writeKey", segmentDocBatch{}, 200, bulkResult{}},
	"POST /v1/import":                                  {"Alias of /v1/batch", "writeKey", segmentDocBatch{}, 200, bulkResult{}},
	"POST /v1/t":                                       {"Alias of /v1/track (the path of Segment's browser library)", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/i":                                       {"Alias of /v1/identify", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/p":                                       {"Alias of /v1/page", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/s":                                       {"Alias of /v1/screen", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/g":                                       {"Alias of /v1/group", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/a":                                       {"Alias of /v1/alias", "writeKey", segmentDocMessage{}, 200, bulkResult{}},
	"POST /v1/b":                                       {"Alias of /v1/batch (the path of Segment's browser library)", "writeKey", segmentDocBatch{}, 200, bulkResult{}},
	"GET /v1/projects/{writeKey}/settings":             {"Settings Segment's browser library loads before it sends (its cdnURL pointed at this edge); the write key is in the path and must be bound to a sub-system with the ingest scope", "none", nil, 200, segmentSettingsDoc{}},
	"GET /api/v1/partners":                             {"List partners (page, pageSize ≤ 200, includeDeleted)", "admin", nil, 200, registryapi.PartnerPage{}},
	"POST /api/v1/partners":                            {"Create a partner", "admin", partnerBody{}, 201, tenant.Partner{}},
	"GET /api/v1/partners/{id}":                        {"Get a partner", "admin", nil, 200, tenant.Partner{}},
	"PUT /api/v1/partners/{id}":                        {"Update a partner (status Active or Inactive)", "admin", partnerBody{}, 200, tenant.Partner{}},
	"DELETE /api/v1/partners/{id}":                     {"Soft-delete a partner; revokes its keys, disables its sub-systems", "admin", nil, 200, tenant.Partner{}},
	"PATCH /api/v1/partners/{id}/toggle-status":        {"Active ↔ Inactive (never undeletes)", "admin", nil, 200, tenant.Partner{}},
	"GET /api/v1/partners/by-code/{code}":              {"Get a live partner by code", "admin", nil, 200, tenant.Partner{}},
	"POST /api/v1/partners/{id}/sub-systems":           {"Create a sub-system", "admin", subSystemBody{}, 201, tenant.SubSystem{}},
	"GET /api/v1/partners/{id}/sub-systems":            {"List a partner's sub-systems (includeDeleted)", "admin", nil, 200, []tenant.SubSystem{}},
	"GET /api/v1/partners/{id}/sub-systems/{subId}":    {"Get a sub-system of the partner", "admin", nil, 200, tenant.SubSystem{}},
	"PUT /api/v1/partners/{id}/sub-systems/{subId}":    {"Update a sub-system's name, code or status", "admin", subSystemBody{}, 200, tenant.SubSystem{}},
	"DELETE /api/v1/partners/{id}/sub-systems/{subId}": {"Soft-delete a sub-system", "admin", nil, 200, tenant.SubSystem{}},
	"PATCH /api/v1/partners/{id}/sub-systems/{subId}/toggle-status": {"Active ↔ Inactive", "admin", nil, 200, tenant.SubSystem{}},
	"GET /api/v1/partners/{id}/sub-systems/by-code/{code}":          {"Get a live sub-system by code", "admin", nil, 200, tenant.SubSystem{}},
	"GET /api/v1/partners/{id}/dead-letters":                        {"List the partner's dead letters: events that could not be stored, with the reason (after, limit ≤ 200); the admin's, or the partner's own with a key of the report scope (a key bound to a sub-system lists that sub-system's)", "report", nil, 200, dlqapi.Page{}},
	"POST /api/v1/partners/{id}/dead-letters/replay": {"Replay dead letters into the event stream ({seqs:[…]}, or none for all, up to 1,000)", "admin",
		struct {
			Seqs []uint64 `json:"seqs,omitempty"`
		}{}, 200, dlqapi.ReplayResult{}},
	"DELETE /api/v1/partners/{id}/dead-letters/{seq}": {"Discard one dead letter", "admin", nil, 200, map[string]uint64{}},
	"GET /api/v1/sub-systems":                         {"List the live sub-systems of all live partners", "admin", nil, 200, []tenant.SubSystem{}},
	"POST /api/v1/partners/{id}/api-keys":             {"Create a key; the key and its signing secret are shown once", "admin", keyBody{}, 201, registryapi.CreatedKey{}},
	"GET /api/v1/partners/{id}/api-keys":              {"List a partner's keys (never a secret)", "admin", nil, 200, []tenant.KeyView{}},
	"PUT /api/v1/partners/{id}/api-keys/{keyId}":      {"Change a key's name, scopes, binding, rate limit or signing", "admin", keyBody{}, 200, tenant.KeyView{}},
	"DELETE /api/v1/partners/{id}/api-keys/{keyId}":   {"Revoke a key, on every edge at once", "admin", nil, 200, tenant.KeyView{}},
	"POST /api/v1/partners/{id}/api-keys/{keyId}/regenerate": {"Replace a key; the old one is revoked or kept for graceSeconds", "admin",
		keyBody{}, 201, registryapi.CreatedKey{}},
	"GET /api/v1/reports/sub-systems/{id}":     {"Sub-system report: total, by type, unique users and a zero-filled series (default hourly, UTC)", "report", nil, 200, report.SubSystemReport{}},
	"GET /api/v1/reports/partners/{id}":        {"Partner report: total, by type, top event types and sub-systems, unique users and a zero-filled series (default daily, UTC)", "report", nil, 200, report.PartnerReport{}},
	"GET /api/v1/reports/partners/{id}/events": {"A page of the partner's raw events, newest first (by timestamp, then id); follow nextCursor for the next", "report", nil, 200, report.EventsPage{}},
	"GET /api/v1/reports/partners/{id}/tail":   {"Live tail: the partner's events as workers store them, as server-sent events (\"stored\": one event's id, sub-system, type, time and user ids; \"omitted\": how many were not sent, past 50 a second; \"closing\": this edge stops or the stream is an hour old, reconnect; \"refused\": the credential is no longer valid, with the error). At most 64 streams an edge, 8 of one partner, the admin's 16 apart", "report", nil, 200, ""},
	"GET /api/v1/session":                      {"Who a credential is: the admin (role admin) or a partner's report key (role reports, with its partner)", "report", nil, 200, Session{}},
}

// streamDocs are the routes whose success answer is a stream of
// server-sent events; their errors keep the envelope.
var streamDocs = map[string]bool{"GET /api/v1/reports/partners/{id}/tail": true}

// bareDocs are the routes whose success answer is data itself, not the
// envelope: a third party's client reads them. Their errors keep the envelope.
var bareDocs = map[string]bool{"GET /v1/projects/{writeKey}/settings": true}

// queryDocs documents the query parameters of the routes that take some;
// TestOpenAPI holds them to what the handlers accept.
var queryDocs = map[string][]qp{
	"GET /api/v1/reports/sub-systems/{id}": {qFrom, qTo, qStartDate, qEndDate, qSubGranularity, qTZ, qEventType},
	"GET /api/v1/reports/partners/{id}":    {qFrom, qTo, qStartDate, qEndDate, qPartnerGranularity, qTZ, qSubSystemID, qEventType, qTop},
	"GET /api/v1/reports/partners/{id}/events": {{"from", "string", "RFC 3339 instant or date (UTC); default 30 days before to", nil, nil},
		{"to", "string", "RFC 3339 instant or date (UTC, the whole day), exclusive; default now", nil, nil},
		qSubSystemID, {"eventType", "string", "this event type only (at most 128 characters, no control characters; else 400)", nil, map[string]any{"maxLength": 128}}, {"limit", "integer", "page size, 1-1000; default 100 (a page also stops at 768 KiB of events, with a nextCursor to the rest)", nil, map[string]any{"minimum": 1, "maximum": 1000, "default": 100}},
		{"cursor", "string", "the previous page's nextCursor (same range and filters)", nil, nil}},
	"GET /api/v1/partners":                   {{"page", "integer", "page number, from 1", nil, map[string]any{"minimum": 1, "maximum": 1_000_000, "default": 1}}, {"pageSize", "integer", "1-200; default 50", nil, map[string]any{"minimum": 1, "maximum": 200, "default": 50}}, {"includeDeleted", "boolean", "list deleted partners too", nil, nil}},
	"GET /api/v1/partners/{id}/sub-systems":  {{"includeDeleted", "boolean", "list deleted sub-systems too", nil, nil}},
	"GET /api/v1/partners/{id}/dead-letters": {{"after", "integer", "list dead letters after this sequence", nil, nil}, {"limit", "integer", "1-200", nil, map[string]any{"minimum": 1, "maximum": 200}}},
	"GET /api/v1/reports/partners/{id}/tail": {qSubSystemID},
}

var paramRE = regexp.MustCompile(`:([A-Za-z]+)`)

// publicPath turns a registered route into the path clients call.
func publicPath(route string) string {
	switch {
	case strings.HasPrefix(route, "/api/v1/_by-code/partners/"):
		return "/api/v1/partners/by-code/{code}"
	case strings.HasPrefix(route, "/api/v1/_by-code/sub-systems/"):
		return "/api/v1/partners/{id}/sub-systems/by-code/{code}"
	}
	return paramRE.ReplaceAllString(route, "{$1}")
}

// Routes lists "METHOD /path" of every public API route.
func (s *Server) Routes() []string { return s.routeList }

// stringOrNumber documents an id Segment's libraries send as either.
type stringOrNumber string

// typeSchemas are the types whose schema is not their Go kind's.
var typeSchemas = map[reflect.Type]map[string]any{
	reflect.TypeOf(tenant.Status("")):    {"type": "string", "enum": []string{string(tenant.Active), string(tenant.Inactive), string(tenant.Deleted)}},
	reflect.TypeOf(tenant.KeyStatus("")): {"type": "string", "enum": []string{string(tenant.KeyActive), string(tenant.KeyRevoked)}},
	reflect.TypeOf(stringOrNumber("")):   {"type": []string{"string", "number"}},
	reflect.TypeOf(time.Time{}):          {"type": "string", "format": "date-time"},
	reflect.TypeOf(json.RawMessage{}):    {}, // any JSON value
	reflect.TypeOf(apierr.Code("")):      {"type": "string", "enum": apierr.Codes()},
}

// Descriptions of the report answers' fields, by type and JSON name.
var (
	rangeDocs = map[string]string{
		"from":         "start of the range, widened to a whole bucket in tz (with tz's offset)",
		"to":           "end of the range (exclusive), widened to a whole bucket in tz",
		"granularity":  "the buckets of timeSeries: minute, hour, day, week (from Monday) or month, on tz's calendar",
		"tz":           "the IANA zone of the buckets",
		"eventType":    "the event type counted, when the query named one",
		"subSystemId":  "the sub-system counted, when the query named one",
		"totalEvents":  "events in the range (each stored event once: a duplicate id counts once)",
		"eventsByType": fmt.Sprintf("events in the range by event type; a slot (a minute, an hour, a day...) names at most %d types, the first it counted, and counts the events of any other under %q, as does an answer past that many (the smallest go there)", storage.MaxGroups, storage.OtherGroup),
		"uniqueUsers":  fmt.Sprintf("distinct users in the range (userId, else anonymousId), estimated by a HyperLogLog sketch: relative standard error %.2f%%, 99.7%% of estimates within %.1f%%; with eventType, that type's users (absent over a range from before a Cassandra keyspace was upgraded to keep them)", report.UniqueUsersError*100, 3*report.UniqueUsersError*100),
		"timeSeries":   "every bucket of the range, oldest first, zero-filled",
	}
	fieldDocs = map[reflect.Type]map[string]string{
		reflect.TypeOf(report.SubSystemReport{}): rangeDocs,
		reflect.TypeOf(report.PartnerReport{}): merged(rangeDocs, map[string]string{
			"topEventTypes": "event types by events in the range, most first (ties by name), at most top; never \"$other\"",
			"topSubSystems": "sub-systems by events in the range, most first, at most top; never \"$other\"",
		}),
		reflect.TypeOf(report.Point{}): {
			"timestamp":   "the bucket's start, with tz's offset at that instant",
			"count":       "events in the bucket",
			"uniqueUsers": "distinct users in the bucket, estimated as the range's; with eventType, that type's (absent as the range's is)",
		},
		reflect.TypeOf(report.Freshness{}): {
			"dataCompleteUntil": "every event received before this instant is counted; later ones may still be on their way to storage (absent when the reporter cannot see the bus)",
			"cachedAt":          "when an answer from the report cache was computed (the Age header says how long ago); absent on an answer computed for this request",
		},
		reflect.TypeOf(report.EventsPage{}): {
			"from":              "start of the listed range",
			"to":                "end of the listed range (exclusive)",
			"limit":             "the page size asked for",
			"subSystemId":       "the sub-system listed, when the query named one",
			"eventType":         "the event type listed, when the query named one",
			"events":            "newest first: by timestamp, then id",
			"nextCursor":        "pass as cursor (with the same partner and filters) for the next page; absent on the last",
			"dataCompleteUntil": "every event received before this instant is stored; later ones may not be listed yet",
			"cachedAt":          "when a page from the report cache was listed (the Age header says how long ago); absent on a page listed for this request, and a first page without to is never cached",
		},
	}
)

func merged(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// fieldEnums constrain fields by name, where the Go type is a plain string.
var fieldEnums = map[string][]string{"scopes": {tenant.ScopeIngest, tenant.ScopeReport}}

// nullable lets s be null too: what encoding/json writes for a nil
// pointer, slice or map.
func nullable(s map[string]any) map[string]any {
	switch t := s["type"].(type) {
	case string:
		out := maps.Clone(s)
		out["type"] = []string{t, "null"}
		if e, ok := s["enum"].([]string); ok {
			out["enum"] = append(anySlice(e), nil) // an enum must list null itself
		}
		return out
	case nil:
		return s // no type: anything, null included
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

func anySlice[T any](in []T) []any {
	out := make([]any, len(in))
	for i, v := range in {
		out[i] = v
	}
	return out
}

// schemaOf derives a JSON schema from a Go type, so the document is what the
// code sends and reads: fields without omitempty are required, nil
// pointers, slices and maps may be null.
func schemaOf(t reflect.Type, depth int) map[string]any {
	if depth > 8 {
		return map[string]any{}
	}
	if t.Kind() == reflect.Pointer {
		return nullable(schemaOf(t.Elem(), depth))
	}
	if s, ok := typeSchemas[t]; ok {
		return maps.Clone(s)
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return nullable(map[string]any{"type": "array", "items": schemaOf(t.Elem(), depth+1)})
	case reflect.Map:
		return nullable(map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), depth+1)})
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if tag == "-" || !f.IsExported() {
				continue
			}
			if f.Anonymous && name == "" {
				inner := schemaOf(f.Type, depth+1)
				for k, v := range inner["properties"].(map[string]any) {
					props[k] = v
				}
				if r, ok := inner["required"].([]string); ok {
					required = append(required, r...)
				}
				continue
			}
			if name == "" {
				name = f.Name
			}
			if name == "hash" || name == "signingSecret" && t == reflect.TypeOf(tenant.APIKey{}) {
				continue // never sent
			}
			fs := schemaOf(f.Type, depth+1)
			if e, ok := fieldEnums[name]; ok && fs["items"] != nil {
				fs["items"] = map[string]any{"type": "string", "enum": e}
			}
			if d, ok := fieldDocs[t][name]; ok {
				fs["description"] = d
			}
			props[name] = fs
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				required = append(required, name)
			}
		}
		out := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			slices.Sort(required)
			out["required"] = required
		}
		return out
	}
	return map[string]any{} // an interface: any value
}

// withRequired marks a request body's fields the server requires (every
// field of a request type is optional to Go).
func withRequired(s map[string]any, fields []string) map[string]any {
	if len(fields) > 0 {
		s["required"] = fields
	} else {
		delete(s, "required")
	}
	return s
}

// requestRequired are the fields each route refuses to go without.
var requestRequired = map[string][]string{
	"POST /api/v1/tracking":                         {"eventType"},
	"POST /api/v1/tracking/bulk":                    {"events"},
	"POST /api/v1/tracking/events":                  {"events"},
	"POST /api/v1/partners":                         {"code", "name"},
	"POST /api/v1/partners/{id}/sub-systems":        {"code", "name"},
	"POST /api/v1/partners/{id}/api-keys":           {"name"},
	"POST /v1/batch":                                {"batch"},
	"POST /v1/import":                               {"batch"},
	"POST /v1/b":                                    {"batch"},
	"PUT /api/v1/partners/{id}":                     nil,
	"PUT /api/v1/partners/{id}/sub-systems/{subId}": nil,
}

// envelopeOf is the answer's schema: data is the route's type on success;
// on an error, null or what the error carries (per-item results, checks).
func envelopeOf(data any, codes []apierr.Code) map[string]any {
	ds := map[string]any{"type": "null"}
	if data != nil {
		ds = schemaOf(reflect.TypeOf(data), 0)
	}
	props := map[string]any{
		"success": map[string]any{"type": "boolean"}, "data": ds, "message": map[string]any{"type": "string"},
		"requestId": map[string]any{"type": "string"}, "timestamp": map[string]any{"type": "string", "format": "date-time"},
	}
	required := []string{"data", "requestId", "success", "timestamp"}
	if codes != nil {
		errSchema := schemaOf(reflect.TypeOf(apierr.Error{}), 0)
		errSchema["properties"].(map[string]any)["code"] = map[string]any{"type": "string", "enum": codes}
		props["error"] = errSchema
		props["success"] = map[string]any{"type": "boolean", "const": false}
		props["data"] = map[string]any{"type": []string{"object", "null"}}
		required = append(required, "error")
		slices.Sort(required)
	} else {
		props["success"] = map[string]any{"type": "boolean", "const": true}
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

// writeOnly are the codes only a request with a body, or one that writes,
// can be answered: a GET's operation does not list them.
var writeOnly = map[apierr.Code]bool{
	apierr.InvalidJSON: true, apierr.BodyTooLarge: true, apierr.BatchTooLarge: true, apierr.MetadataTooLarge: true,
	apierr.UnsupportedMedia: true, apierr.DuplicateEvent: true, apierr.MessageTooLarge: true, apierr.CodeTaken: true,
	apierr.KeyRotated: true, apierr.PropagationPending: true,
}

// errorStatuses groups the error codes by their HTTP status.
func errorStatuses() map[int][]apierr.Code {
	out := map[int][]apierr.Code{}
	for _, c := range apierr.Codes() {
		out[c.Status()] = append(out[c.Status()], c)
	}
	return out
}

// answerHeaders are the headers of every answer; errors add Retry-After.
func answerHeaders(isError bool) map[string]any {
	h := map[string]any{
		"X-Request-Id":           map[string]any{"description": "the request's id, always made by the server (also requestId)", "schema": map[string]any{"type": "string"}},
		"X-Content-Type-Options": map[string]any{"description": "always nosniff", "schema": map[string]any{"type": "string", "enum": []string{"nosniff"}}},
	}
	if isError {
		h["Retry-After"] = map[string]any{"description": "seconds to wait: on 429 rate_limited and on 503 (backpressure, overloaded, service_unavailable, timeout)",
			"schema": map[string]any{"type": "integer"}}
	}
	return h
}

var wordRE = regexp.MustCompile(`[A-Za-z0-9]+`)

// operationID names an operation from its method and path, e.g.
// "GET /api/v1/partners/{id}/sub-systems" → getPartnersByIdSubSystems.
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	path = strings.TrimPrefix(strings.TrimPrefix(path, "/api/v1"), "/v1")
	if strings.HasPrefix(path, "/") && path != "/" && !strings.Contains(path[1:], "/") && len(path) <= 2 {
		path = "/segment" + path // the browser library's one-letter aliases
	} else if method == http.MethodPost && !strings.HasPrefix(path, "/partners") && !strings.HasPrefix(path, "/tracking") {
		path = "/segment" + path
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" {
			continue
		}
		if strings.HasPrefix(seg, "{") {
			b.WriteString("By")
			seg = strings.Trim(seg, "{}")
		}
		for _, w := range wordRE.FindAllString(seg, -1) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// openAPI builds the OpenAPI 3.1 document of the routes.
func (s *Server) openAPI() map[string]any {
	paths := map[string]any{}
	statuses := errorStatuses()
	for _, r := range s.routeList {
		d, ok := docs[r]
		if !ok {
			continue
		}
		method, path, _ := strings.Cut(r, " ")
		okHeaders := answerHeaders(false)
		if strings.HasPrefix(path, "/api/v1/reports/") {
			okHeaders["Age"] = map[string]any{"description": "on an answer from the report cache: seconds since it was computed (cachedAt)",
				"schema": map[string]any{"type": "integer"}}
		}
		okSchema := envelopeOf(d.data, nil)
		if bareDocs[r] {
			okSchema = schemaOf(reflect.TypeOf(d.data), 0)
		}
		okContent := map[string]any{"application/json": map[string]any{"schema": okSchema}}
		if streamDocs[r] {
			okContent = map[string]any{"text/event-stream": map[string]any{"schema": map[string]any{"type": "string"}}}
		}
		responses := map[string]any{
			itoa(d.status): map[string]any{"description": "success", "headers": okHeaders, "content": okContent},
		}
		for status, codes := range statuses {
			if method == http.MethodGet {
				codes = slices.DeleteFunc(slices.Clone(codes), func(c apierr.Code) bool { return writeOnly[c] })
				if len(codes) == 0 {
					continue
				}
			}
			responses[itoa(status)] = map[string]any{"description": http.StatusText(status) + ": see error.code",
				"headers": answerHeaders(true), "content": map[string]any{"application/json": map[string]any{"schema": envelopeOf(nil, codes)}}}
		}
		op := map[string]any{"summary": d.summary, "operationId": operationID(method, path), "responses": responses}
		switch d.auth {
		case "admin":
			op["security"] = []any{map[string]any{"admin": []string{}}}
		case "key":
			op["security"] = []any{map[string]any{"apiKey": []string{}}}
		case "report":
			op["security"] = []any{map[string]any{"admin": []string{}}, map[string]any{"apiKey": []string{}}}
		case "writeKey": // or writeKey in the body
			op["security"] = []any{map[string]any{"writeKey": []string{}}, map[string]any{"apiKey": []string{}}, map[string]any{}}
		default:
			op["security"] = []any{} // public
		}
		var params []any
		for _, m := range regexp.MustCompile(`\{([A-Za-z]+)\}`).FindAllStringSubmatch(path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range queryDocs[r] {
			sc := map[string]any{"type": q.typ}
			if q.enum != nil {
				sc["enum"] = q.enum
			}
			maps.Copy(sc, q.bounds)
			params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.desc, "schema": sc})
		}
		if params != nil {
			op["parameters"] = params
		}
		if d.body != nil {
			sc := withRequired(schemaOf(reflect.TypeOf(d.body), 0), requestRequired[r])
			content := map[string]any{"application/json": map[string]any{"schema": sc}}
			if strings.HasPrefix(path, "/v1/") {
				content["text/plain"] = map[string]any{"schema": sc} // sendBeacon's type
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
		}
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[strings.ToLower(method)] = op
	}
	// CORS preflights of the routes browsers call.
	hdr := func(desc string) map[string]any {
		return map[string]any{"description": desc, "schema": map[string]any{"type": "string"}}
	}
	for _, path := range s.preflights {
		item, _ := paths[path].(map[string]any)
		if item == nil {
			continue
		}
		item["options"] = map[string]any{"summary": "CORS preflight", "operationId": operationID(http.MethodOptions, path),
			"security": []any{}, "responses": map[string]any{"204": map[string]any{"description": "the request may be sent from any origin",
				"headers": map[string]any{
					"Access-Control-Allow-Origin":   hdr("always *"),
					"Access-Control-Allow-Methods":  hdr("POST"),
					"Access-Control-Allow-Headers":  hdr("the request headers a browser may send"),
					"Access-Control-Max-Age":        hdr("seconds the answer may be cached (86400)"),
					"Access-Control-Expose-Headers": hdr("the answer headers a page may read"),
				}}}}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "Volcanion Tracking", "version": "1",
			"description": "Multi-tenant event tracking: ingest (our routes and Segment's HTTP Tracking API), partners, sub-systems and keys, reports. Every answer but the Segment settings is the envelope {success, data, message?, error?, requestId, timestamp}."},
		"servers": []any{map[string]any{"url": "/", "description": "this edge"}},
		"paths":   paths,
		"components": map[string]any{"securitySchemes": map[string]any{
			"admin":  map[string]any{"type": "http", "scheme": "bearer"},
			"apiKey": map[string]any{"type": "apiKey", "in": "header", "name": "X-Api-Key"},
			// Segment's libraries: the key as user name, no password.
			"writeKey": map[string]any{"type": "http", "scheme": "basic"},
		}},
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.openAPI())
}
