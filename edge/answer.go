package edge

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/volcanion/tracking/shared/event"
)

// Ingest answers are written by hand, byte for byte what json.Encoder (HTML
// escaping off) writes for them (TestAnswerEncoding holds the two
// together): reflection would cost an allocation or more per event of a
// bulk. Every other answer goes through the encoder.

var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// appendEnvelope appends env as JSON with a trailing newline, if its data
// is an ingest answer; ok is false for any other answer.
func appendEnvelope(dst []byte, env *envelope) (out []byte, ok bool) {
	if y := env.Timestamp.Year(); env.Error != nil || y < 0 || y > 9999 {
		return dst, false
	}
	dst = append(dst, `{"success":`...)
	dst = strconv.AppendBool(dst, env.Success)
	dst = append(dst, `,"data":`...)
	switch d := env.Data.(type) {
	case itemResult:
		if dst, ok = appendItem(dst, &d); !ok {
			return dst, false
		}
	case bulkResult:
		dst = append(dst, `{"accepted":`...)
		dst = strconv.AppendInt(dst, int64(d.Accepted), 10)
		dst = append(dst, `,"rejected":`...)
		dst = strconv.AppendInt(dst, int64(d.Rejected), 10)
		dst = append(dst, `,"results":`...)
		if d.Results == nil {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, '[')
			for i := range d.Results {
				if i > 0 {
					dst = append(dst, ',')
				}
				if dst, ok = appendItem(dst, &d.Results[i]); !ok {
					return dst, false
				}
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	default:
		return dst, false
	}
	if env.Message != "" {
		dst = append(dst, `,"message":`...)
		dst = event.AppendString(dst, env.Message, false)
	}
	dst = append(dst, `,"requestId":`...)
	dst = event.AppendString(dst, env.RequestID, false)
	dst = append(dst, `,"timestamp":"`...)
	dst = env.Timestamp.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, "\"}\n"...), true
}

func appendItem(dst []byte, it *itemResult) ([]byte, bool) {
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, int64(it.Index), 10)
	if it.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = event.AppendString(dst, it.ID, false)
	}
	if it.EventTime != nil {
		if y := it.EventTime.Year(); y < 0 || y > 9999 {
			return dst, false // the encoder fails on these; so must we
		}
		dst = append(dst, `,"eventTime":"`...)
		dst = it.EventTime.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"status":`...)
	dst = event.AppendString(dst, it.Status, false)
	if it.Duplicate {
		dst = append(dst, `,"duplicate":true`...)
	}
	if it.Error != nil {
		// Rare (a refused event in a bulk): the encoder's bytes exactly.
		b, err := json.Marshal(it.Error)
		if err != nil {
			return dst, false
		}
		dst = append(append(dst, `,"error":`...), unescapeHTML(b)...)
	}
	return append(dst, '}'), true
}

// unescapeHTML undoes json.Marshal's HTML escaping (\u003c, \u003e,
// \u0026), which the answer encoder has off. A backslash escaped itself
// (\\u003c) is left alone.
func unescapeHTML(b []byte) []byte {
	out := b[:0:0]
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			if b[i+1] == 'u' && i+5 < len(b) && string(b[i+2:i+4]) == "00" {
				switch string(b[i+4 : i+6]) {
				case "3c":
					out = append(out, '<')
					i += 5
					continue
				case "3e":
					out = append(out, '>')
					i += 5
					continue
				case "26":
					out = append(out, '&')
					i += 5
					continue
				}
			}
			out = append(out, b[i], b[i+1])
			i++
			continue
		}
		out = append(out, b[i])
	}
	return out
}
