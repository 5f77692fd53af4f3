package edge

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/apierr"
)

func encoderBytes(t *testing.T, env envelope) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env); err != nil {
		t.Skip(err)
	}
	return b.Bytes()
}

// FuzzAnswerEncoding holds the hand-written ingest answers to the bytes
// json.Encoder writes for them.
func FuzzAnswerEncoding(f *testing.F) {
	f.Add("e-1", "Queued", int64(1764115200123456789), false, "", "", "Event queued for processing", "0123abcd", 0)
	f.Add("<&>\u2028\x00\xff", "Rejected", int64(-5), true, "invalid_event", "a \"<b>\" & \\u003c", "m<>&", "r", 3)
	f.Add("", "", int64(0), false, "", "", "", "", 1)
	f.Fuzz(func(t *testing.T, id, status string, nanos int64, dup bool, code, msg, message, reqID string, n int) {
		at := time.Unix(0, nanos).In(time.FixedZone("z", -(3*3600 + 1800)))
		it := itemResult{Index: n, ID: id, EventTime: &at, Status: status, Duplicate: dup}
		if code != "" {
			it.Error = &apierr.Error{Code: apierr.Code(code), Message: msg, Fields: []apierr.FieldError{{Field: msg, Message: code}}}
		}
		envs := []envelope{
			{Success: true, Data: it, Message: message, RequestID: reqID, Timestamp: at.UTC()},
			{Success: true, Data: itemResult{Index: n, Status: status}, RequestID: reqID, Timestamp: at},
		}
		bulk := bulkResult{Accepted: n, Rejected: -n}
		for i := range n % 5 {
			c := it
			c.Index = i
			if i%2 == 1 {
				c.Error, c.EventTime = nil, nil
			}
			bulk.Results = append(bulk.Results, c)
		}
		envs = append(envs, envelope{Success: n%2 == 0, Data: bulk, Message: message, RequestID: reqID, Timestamp: at})
		for _, env := range envs {
			got, ok := appendEnvelope(nil, &env)
			if !ok {
				continue // the encoder writes it
			}
			if want := encoderBytes(t, env); !bytes.Equal(got, want) {
				t.Fatalf("answer\n got %s\nwant %s", got, want)
			}
		}
	})
}

// Errors and other answers are left to the encoder.
func TestAnswerEncodingDeclines(t *testing.T) {
	for _, env := range []envelope{
		{Error: apierr.New(apierr.Internal, "x")},
		{Success: true, Data: map[string]int{"a": 1}},
	} {
		if _, ok := appendEnvelope(nil, &env); ok {
			t.Fatalf("%+v was hand-encoded", env)
		}
	}
}
