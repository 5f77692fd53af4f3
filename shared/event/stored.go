package event

import (
	"encoding/json"
	"time"
)

// DecodeStored decodes a stored event (as AppendJSON or json.Marshal wrote
// it) into e, as json.Unmarshal into a zero Event does: a page of raw
// events decodes a hundred, and encoding/json's reflection was a third of
// that page's CPU. The common shape (the known fields, each once, spelt as
// written, plain strings, RFC 3339 times) is read without reflection, with
// two allocations (one string for every text field, one copy of the
// metadata); anything else is left to encoding/json. FuzzDecodeStored
// holds the two to the same result and error.
func DecodeStored(data []byte, e *Event) error {
	var fast Event
	if decodeStoredFast(data, &fast) {
		*e = fast
		return nil
	}
	var slow Event
	if err := json.Unmarshal(data, &slow); err != nil {
		return err
	}
	*e = slow
	return nil
}

// The fields of a stored event, as bits of what was seen.
const (
	sID uint16 = 1 << iota
	sPartnerID
	sSubSystemID
	sSubSystemCode
	sEventType
	sTimestamp
	sReceivedAt
	sUserID
	sAnonymousID
	sMetadata
	sIP
	sUserAgent
	sKeyID
)

func storedField(k []byte) uint16 {
	switch string(k) { // no allocation: compared in place
	case "id":
		return sID
	case "partnerId":
		return sPartnerID
	case "subSystemId":
		return sSubSystemID
	case "subSystemCode":
		return sSubSystemCode
	case "eventType":
		return sEventType
	case "timestamp":
		return sTimestamp
	case "receivedAt":
		return sReceivedAt
	case "userId":
		return sUserID
	case "anonymousId":
		return sAnonymousID
	case "metadata":
		return sMetadata
	case "ip":
		return sIP
	case "userAgent":
		return sUserAgent
	case "keyId":
		return sKeyID
	}
	return 0
}

// decodeStoredFast is DecodeStored's common shape; false leaves the body
// to encoding/json (e may then hold part of it).
func decodeStoredFast(data []byte, e *Event) bool {
	d := fastDecoder{data: data}
	d.space()
	if !d.byte('{') {
		return false
	}
	var seen uint16
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
		field := storedField(data[ks:ke])
		if field == 0 || seen&field != 0 {
			return false // unknown, or cased otherwise (encoding/json folds case), or repeated
		}
		seen |= field
		switch field {
		case sMetadata:
			vs := d.i
			if !d.skipValue() || data[vs] == 'n' { // null: as encoding/json leaves it
				return false
			}
			// A copy: encoding/json copies a RawMessage, and the caller
			// may reuse data.
			e.Metadata = append(json.RawMessage(nil), data[vs:d.i]...)
		case sTimestamp, sReceivedAt:
			vs := d.i
			if _, _, ok := d.plainString(); !ok {
				return false
			}
			var t time.Time
			if t.UnmarshalJSON(data[vs:d.i]) != nil {
				return false
			}
			if field == sTimestamp {
				e.Timestamp = t
			} else {
				e.ReceivedAt = t
			}
		default:
			s, end, ok := d.plainString()
			if !ok {
				return false
			}
			v := str(s, end)
			switch field {
			case sID:
				e.ID = v
			case sPartnerID:
				e.PartnerID = v
			case sSubSystemID:
				e.SubSystemID = v
			case sSubSystemCode:
				e.SubSystemCode = v
			case sEventType:
				e.EventType = v
			case sUserID:
				e.UserID = v
			case sAnonymousID:
				e.AnonymousID = v
			case sIP:
				e.IP = v
			case sUserAgent:
				e.UserAgent = v
			case sKeyID:
				e.KeyID = v
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
	return e.Metadata == nil || json.Valid(e.Metadata)
}
