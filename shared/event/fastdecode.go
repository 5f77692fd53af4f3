package event

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// decodeFast decodes the common shape of an event body without reflection:
// an object of the known fields, each once, spelt as documented, with plain
// string values (no escapes), metadata of any JSON value, and an RFC 3339
// timestamp. It allocates one string for all the text fields (substrings of
// one copy of data) and the timestamp. Anything else (an unknown or
// differently cased key, a repeated key, an escape in a text field, null, a
// wrong type, invalid UTF-8 or JSON) makes it return false, and the caller
// decodes with encoding/json, whose result and errors it must match:
// FuzzDecodeFast holds the two together.
func decodeFast(data []byte, in *Input) bool {
	d := fastDecoder{data: data}
	d.space()
	if !d.byte('{') {
		return false
	}
	var seen uint8
	var text string // one copy of data, made on the first text field
	str := func(start, end int) string {
		if text == "" {
			text = string(data)
		}
		return text[start:end]
	}
	d.space()
	if d.byte('}') {
		return d.end()
	}
	for {
		d.space()
		ks, ke, ok := d.plainString()
		if !ok {
			return false
		}
		d.space()
		if !d.byte(':') {
			return false
		}
		d.space()
		field := fieldOf(data[ks:ke])
		if field == 0 || seen&field != 0 {
			return false
		}
		seen |= field
		switch field {
		case fMetadata:
			vs := d.i
			if !d.skipValue() {
				return false
			}
			if data[vs] == 'n' { // null leaves the field as encoding/json leaves it: a RawMessage of "null"
				return false
			}
			in.Metadata = json.RawMessage(data[vs:d.i:d.i])
		case fTimestamp:
			vs := d.i
			if _, _, ok := d.plainString(); !ok {
				return false
			}
			var t time.Time
			if t.UnmarshalJSON(data[vs:d.i]) != nil {
				return false
			}
			in.Timestamp = &t
		default:
			s, e, ok := d.plainString()
			if !ok {
				return false
			}
			v := str(s, e)
			switch field {
			case fID:
				in.ID = v
			case fSubSystemCode:
				in.SubSystemCode = v
			case fEventType:
				in.EventType = v
			case fUserID:
				in.UserID = v
			case fAnonymousID:
				in.AnonymousID = v
			}
		}
		d.space()
		if d.byte(',') {
			continue
		}
		if d.byte('}') {
			break
		}
		return false
	}
	if !d.end() {
		return false
	}
	// Metadata was only delimited; encoding/json would have validated it.
	return in.Metadata == nil || json.Valid(in.Metadata)
}

const (
	fID uint8 = 1 << iota
	fSubSystemCode
	fEventType
	fMetadata
	fTimestamp
	fUserID
	fAnonymousID
)

func fieldOf(k []byte) uint8 {
	switch string(k) { // no allocation: the compiler compares in place
	case "id":
		return fID
	case "subSystemCode":
		return fSubSystemCode
	case "eventType":
		return fEventType
	case "metadata":
		return fMetadata
	case "timestamp":
		return fTimestamp
	case "userId":
		return fUserID
	case "anonymousId":
		return fAnonymousID
	}
	return 0
}

type fastDecoder struct {
	data []byte
	i    int
}

func (d *fastDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) byte(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end: only whitespace may follow the object.
func (d *fastDecoder) end() bool {
	d.space()
	return d.i == len(d.data)
}

// plainString reads a string with no escapes, of valid UTF-8 and no
// control characters, and returns the bounds of its contents.
func (d *fastDecoder) plainString() (start, end int, ok bool) {
	if !d.byte('"') {
		return 0, 0, false
	}
	start = d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			end = d.i
			d.i++
			return start, end, utf8.Valid(d.data[start:end])
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
		d.i++
	}
	return 0, 0, false
}

// skipValue moves past one JSON value, checking only enough to find its
// end (the caller validates it).
func (d *fastDecoder) skipValue() bool {
	if d.i >= len(d.data) {
		return false
	}
	switch d.data[d.i] {
	case '"':
		return d.skipString()
	case '{', '[':
		depth := 0
		for d.i < len(d.data) {
			switch d.data[d.i] {
			case '"':
				if !d.skipString() {
					return false
				}
				continue
			case '{', '[':
				// encoding/json refuses a document nested deeper than
				// 10,000, counted from the body's top: leave deep values
				// to it rather than validate the metadata alone.
				if depth++; depth > maxFastDepth {
					return false
				}
			case '}', ']':
				depth--
				if depth == 0 {
					d.i++
					return true
				}
			}
			d.i++
		}
		return false
	default: // a number or a literal: up to the next delimiter
		start := d.i
		for d.i < len(d.data) {
			switch d.data[d.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return d.i > start
			}
			d.i++
		}
		return d.i > start
	}
}

// maxFastDepth bounds the nesting the fast path handles.
const maxFastDepth = 512

func (d *fastDecoder) skipString() bool {
	d.i++ // the opening quote
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case '\\':
			d.i += 2
			continue
		case '"':
			d.i++
			return true
		}
		d.i++
	}
	return false
}

// splitBatchFast splits a valid bulk body, {"events":[...]} or a bare
// array, into its items without copying them (they are views of data).
// Any other shape returns false and the caller decodes with encoding/json;
// FuzzSplitBatchFast holds the two together.
func splitBatchFast(data []byte) ([]json.RawMessage, bool) {
	if !json.Valid(data) {
		return nil, false
	}
	d := fastDecoder{data: data}
	d.space()
	wrapped := d.byte('{')
	if wrapped {
		d.space()
		ks, ke, ok := d.plainString()
		if !ok || string(data[ks:ke]) != "events" {
			return nil, false
		}
		d.space()
		if !d.byte(':') {
			return nil, false
		}
		d.space()
	}
	if !d.byte('[') {
		return nil, false
	}
	items := make([]json.RawMessage, 0, 16)
	d.space()
	if !d.byte(']') {
		for {
			d.space()
			s := d.i
			if !d.skipValue() {
				return nil, false
			}
			items = append(items, json.RawMessage(data[s:d.i:d.i]))
			d.space()
			if d.byte(',') {
				continue
			}
			if d.byte(']') {
				break
			}
			return nil, false
		}
	}
	if wrapped {
		d.space()
		if !d.byte('}') {
			return nil, false // another key follows
		}
	}
	return items, d.end()
}
