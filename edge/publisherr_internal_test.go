package edge

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/edge/internal/groupcommit"
	"github.com/volcanion/tracking/shared/apierr"
)

// A client is told "retry later" only for an event known not to be
// stored; when it may be stored, to retry with the same id.
func TestPublishErr(t *testing.T) {
	for _, c := range []struct {
		err  error
		want apierr.Code
	}{
		{nats.ErrDisconnected, apierr.Timeout}, // sent, then the connection dropped: may be stored
		{fmt.Errorf("groupcommit: batch commit: %w", context.DeadlineExceeded), apierr.Timeout},
		{context.Canceled, apierr.Timeout},
		{fmt.Errorf("%w: %w", groupcommit.ErrNotSent, nats.ErrConnectionClosed), apierr.Unavailable},
		{fmt.Errorf("%w: %w", groupcommit.ErrNotSent, context.DeadlineExceeded), apierr.Unavailable},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}, apierr.Backpressure},
		{&jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}, apierr.Backpressure},
		{&jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, apierr.Unavailable},
	} {
		if got := apierr.From(publishErr(c.err)).Code; got != c.want {
			t.Errorf("%v answered %s, want %s", c.err, got, c.want)
		}
	}
}
