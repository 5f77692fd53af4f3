package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
)

// Limits bound what one event may carry.
type Limits struct {
	MaxMetadataBytes int           // size of the metadata object as sent
	MaxEventTypeLen  int           // characters
	MaxIDLen         int           // characters of a client event id
	MaxUserIDLen     int           // characters of userId and anonymousId
	MaxPast          time.Duration // oldest accepted client timestamp, relative to now
	MaxFuture        time.Duration // newest accepted client timestamp, relative to now
	// SubSystemCodeOptional: the key is bound to one sub-system, so an event
	// may leave subSystemCode out.
	SubSystemCodeOptional bool
}

// DefaultLimits are the limits used when the operator sets none.
func DefaultLimits() Limits {
	return Limits{
		MaxMetadataBytes: 32 << 10,
		MaxEventTypeLen:  128,
		MaxIDLen:         128,
		MaxUserIDLen:     255,
		MaxPast:          30 * 24 * time.Hour,
		MaxFuture:        10 * time.Minute,
	}
}

// Decode parses one event body. It never panics; every failure is an
// *apierr.Error naming the field when it can.
func Decode(data []byte, lim Limits, now time.Time) (Input, error) {
	var in Input
	if !decodeFast(data, &in) || badText(data) {
		in = Input{}
		if err := DecodeObject(data, &in); err != nil {
			return in, err
		}
	}
	return in, Validate(&in, lim, now)
}

// DecodeObject decodes a JSON object into v (a pointer to a struct), turning
// decoder errors into API errors that name the field. Text must be valid
// UTF-8: the JSON decoder would silently turn each bad byte into U+FFFD, so
// that different inputs became one (two event types merged into one).
func DecodeObject(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return apierr.New(apierr.InvalidJSON, "the request body is empty; send a JSON object")
	}
	if data[0] != '{' {
		return apierr.New(apierr.InvalidJSON, "the request body must be a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return jsonError(err, data, v)
	}
	if badText(data) {
		field := blame(data, func(_ string, raw json.RawMessage) bool { return badText(raw) })
		return apierr.Invalid(apierr.FieldError{Field: field, Message: "must be valid UTF-8 text (and no unpaired surrogate escape)"})
	}
	return nil
}

// ValidText tells whether JSON text decodes without loss: UTF-8, and no
// unpaired surrogate escape (the decoder would make either U+FFFD).
func ValidText(data []byte) bool { return !badText(data) }

// badText reports JSON text the decoder would change to U+FFFD: bytes
// that are not UTF-8, and \u escapes of unpaired UTF-16 surrogates.
func badText(data []byte) bool {
	if !utf8.Valid(data) {
		return true
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 < len(data) && data[i+1] != 'u' {
			i++ // a one-character escape, \\ included
			continue
		}
		r, ok := hex4(data, i+2)
		switch {
		case !ok:
			continue
		case r >= 0xDC00 && r <= 0xDFFF: // a low half alone
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := hex4(data, i+8)
			if !ok || i+7 >= len(data) || data[i+6] != '\\' || data[i+7] != 'u' || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

// hex4 reads four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// jsonError turns a decoding error of the object data into v into an API
// error. Messages speak JSON (a string, a whole number), never Go: a
// client cannot act on "Time.UnmarshalJSON" or "*int".
func jsonError(err error, data []byte, v any) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "body"
		}
		return apierr.Invalid(apierr.FieldError{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(te.Type), jsonValue(te.Value))})
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return apierr.New(apierr.InvalidJSON, "malformed JSON at byte %d: %s", se.Offset, se.Error())
	}
	// What is left comes from a field's own decoder (time.Time's), and
	// does not name the field: find the member that fails on its own.
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return apierr.New(apierr.InvalidJSON, "the request body could not be decoded")
	}
	field := blame(data, func(name string, raw json.RawMessage) bool {
		one, _ := json.Marshal(map[string]json.RawMessage{name: raw})
		return json.Unmarshal(one, reflect.New(t.Elem()).Interface()) != nil
	})
	if field == "body" {
		return apierr.New(apierr.InvalidJSON, "the request body could not be decoded")
	}
	want := "of another type or format"
	if ft, ok := fieldType(t.Elem(), field); ok {
		want = "in the form of " + jsonKind(ft)
	}
	return apierr.Invalid(apierr.FieldError{Field: field, Message: "must be " + want})
}

// blame names the first top-level member (in name order, so the answer is
// stable) for which bad holds, or "body" when none does.
func blame(data []byte, bad func(name string, raw json.RawMessage) bool) string {
	var members map[string]json.RawMessage
	if json.Unmarshal(data, &members) != nil {
		return "body"
	}
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if bad(n, members[n]) {
			if !utf8.ValidString(n) {
				return "body" // the name itself is the bad text: never echo it
			}
			return n
		}
	}
	return "body"
}

// fieldType finds the type of the struct field JSON decodes name into (the
// decoder matches names case-insensitively).
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" {
			tag = f.Name
		}
		if tag != "-" && strings.EqualFold(tag, name) {
			return f.Type, true
		}
	}
	return nil, false
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// jsonKind names what a Go type accepts, in JSON's words.
func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nil:
		return "a JSON value"
	case t == timeType:
		return "an RFC 3339 timestamp string such as 2026-01-02T15:04:05Z"
	case t == rawType:
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a JSON object"
	}
	return "a JSON value"
}

// jsonValue is the kind of value the client sent (the decoder says
// "number 1.5" for numbers out of a field's range).
func jsonValue(v string) string {
	kind, _, _ := strings.Cut(v, " ")
	switch kind {
	case "number", "string", "bool", "array", "object":
		return kind
	}
	return "that value"
}

// OtherType is reserved: reports count under it the event types past a
// slot's limit (storage.MaxGroups).
const OtherType = "$other"

// Validate checks a decoded input against the limits and normalises it.
func Validate(in *Input, lim Limits, now time.Time) error {
	var fields []apierr.FieldError
	bad := func(f, m string, a ...any) {
		fields = append(fields, apierr.FieldError{Field: f, Message: fmt.Sprintf(m, a...)})
	}

	in.EventType = strings.TrimSpace(in.EventType)
	switch {
	case in.EventType == "":
		bad("eventType", "is required")
	case TypeNameProblem(in.EventType, lim.MaxEventTypeLen) != "":
		bad("eventType", "%s", TypeNameProblem(in.EventType, lim.MaxEventTypeLen))
	case in.EventType == OtherType:
		bad("eventType", "%q is reserved: reports count the types past a slot's limit under it", OtherType)
	}
	in.SubSystemCode = strings.TrimSpace(in.SubSystemCode)
	if in.SubSystemCode == "" && !lim.SubSystemCodeOptional {
		bad("subSystemCode", "is required")
	} else if len(in.SubSystemCode) > 64 || !printable(in.SubSystemCode) {
		bad("subSystemCode", "must be a sub-system code of at most 64 characters")
	}
	if in.ID != "" && !ValidID(in.ID, lim) {
		bad("id", "must be at most %d characters of letters, digits and -_.:", lim.MaxIDLen)
	}
	for _, f := range []struct{ name, v string }{{"userId", in.UserID}, {"anonymousId", in.AnonymousID}} {
		if utf8.RuneCountInString(f.v) > lim.MaxUserIDLen || !printable(f.v) {
			bad(f.name, "must be printable text of at most %d characters", lim.MaxUserIDLen)
		}
	}
	if m := bytes.TrimSpace(in.Metadata); len(m) > 0 && !bytes.Equal(m, []byte("null")) {
		if len(m) > lim.MaxMetadataBytes {
			return apierr.New(apierr.MetadataTooLarge, "metadata is %d bytes; the limit is %d bytes", len(m), lim.MaxMetadataBytes)
		}
		if m[0] != '{' {
			bad("metadata", "must be a JSON object")
		} else {
			in.Metadata = m
		}
	} else {
		in.Metadata = nil
	}
	if in.Timestamp != nil {
		ts := in.Timestamp.UTC()
		// The absolute bound first: the relative ones are operator
		// settings and must not let through a time that cannot be stored.
		if err := instant.Check(ts); err != nil {
			bad("timestamp", "%v", err)
		} else if ts.Before(now.Add(-lim.MaxPast)) {
			bad("timestamp", "is more than %s in the past", lim.MaxPast)
		} else if ts.After(now.Add(lim.MaxFuture)) {
			bad("timestamp", "is more than %s in the future", lim.MaxFuture)
		}
		in.Timestamp = &ts
	}
	if len(fields) > 0 {
		return apierr.Invalid(fields...)
	}
	return nil
}

// TypeNameProblem says what keeps t from being an event type no longer
// than maxLen characters ("" when nothing does): the same rule for what
// is ingested and what reports are asked about.
func TypeNameProblem(t string, maxLen int) string {
	switch {
	case utf8.RuneCountInString(t) > maxLen:
		return fmt.Sprintf("is longer than %d characters", maxLen)
	case !printable(t):
		return "must be printable text without control characters"
	}
	return ""
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func idChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// DecodeBatch parses a bulk body: {"events":[...]} or a bare array. It
// returns the raw items so each can be validated and answered on its own.
func DecodeBatch(data []byte, maxItems int) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, apierr.New(apierr.InvalidJSON, "the request body is empty; send {\"events\":[...]}")
	}
	items, fast := splitBatchFast(data)
	switch {
	case fast:
	case data[0] == '[':
		if err := json.Unmarshal(data, &items); err != nil {
			return nil, jsonError(err, data, &items)
		}
	case data[0] == '{':
		var b Batch
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, jsonError(err, data, &b)
		}
		items = b.Events
	default:
		return nil, apierr.New(apierr.InvalidJSON, "the request body must be {\"events\":[...]} or a JSON array")
	}
	if len(items) == 0 {
		return nil, apierr.Invalid(apierr.FieldError{Field: "events", Message: "must hold at least one event"})
	}
	if len(items) > maxItems {
		return nil, apierr.New(apierr.BatchTooLarge, "the batch holds %d events; the limit is %d per request", len(items), maxItems)
	}
	return items, nil
}

// ValidID tells whether a client event id is well formed.
func ValidID(id string, lim Limits) bool {
	return id != "" && len(id) <= lim.MaxIDLen && idChars(id)
}
