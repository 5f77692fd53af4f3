package event

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e encoded exactly as json.Marshal encodes it (the
// fuzz test holds the two to the same bytes), without reflection and with
// no allocation but dst's growth: the edge encodes every event it accepts.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"partnerId":`...)
	dst = appendString(dst, e.PartnerID)
	dst = append(dst, `,"subSystemId":`...)
	dst = appendString(dst, e.SubSystemID)
	if e.SubSystemCode != "" {
		dst = append(dst, `,"subSystemCode":`...)
		dst = appendString(dst, e.SubSystemCode)
	}
	dst = append(dst, `,"eventType":`...)
	dst = appendString(dst, e.EventType)
	dst = append(dst, `,"timestamp":"`...)
	dst = e.Timestamp.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","receivedAt":"`...)
	dst = e.ReceivedAt.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	for _, f := range [...]struct {
		name string
		v    string
	}{{`,"userId":`, e.UserID}, {`,"anonymousId":`, e.AnonymousID}} {
		if f.v != "" {
			dst = append(dst, f.name...)
			dst = appendString(dst, f.v)
		}
	}
	if len(e.Metadata) > 0 {
		dst = append(dst, `,"metadata":`...)
		dst = appendRaw(dst, e.Metadata)
	}
	for _, f := range [...]struct {
		name string
		v    string
	}{{`,"ip":`, e.IP}, {`,"userAgent":`, e.UserAgent}, {`,"keyId":`, e.KeyID}} {
		if f.v != "" {
			dst = append(dst, f.name...)
			dst = appendString(dst, f.v)
		}
	}
	return append(dst, '}')
}

// appendRaw appends raw JSON as json.Marshal does a json.RawMessage:
// compacted, with <, >, & and U+2028/U+2029 escaped. Input the edge has
// validated is usually compact and plain already, and is copied as is.
func appendRaw(dst, raw []byte) []byte {
	// 0xE2 starts U+2028 and U+2029, which are escaped (IndexAny would
	// read "\xe2" as a rune, never as the byte).
	if bytes.IndexAny(raw, " \t\r\n<>&") < 0 && bytes.IndexByte(raw, 0xE2) < 0 {
		return append(dst, raw...)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return append(dst, "null"...) // unreachable for validated input
	}
	var h bytes.Buffer
	json.HTMLEscape(&h, c.Bytes())
	return append(dst, h.Bytes()...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// with HTML escaping on (its default for Marshal).
func appendString(dst []byte, s string) []byte { return AppendString(dst, s, true) }

// AppendString appends s as a JSON string, escaped exactly as encoding/json
// escapes it, with or without HTML escaping (<, >, &).
func AppendString(dst []byte, s string, escapeHTML bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || b != '<' && b != '>' && b != '&') {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
