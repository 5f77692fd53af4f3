package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errStreamInvalidConfig is nats-server's JSStreamInvalidConfigF (10052),
// sent with status 500 although retrying a refused configuration never helps.
const errStreamInvalidConfig jetstream.ErrorCode = 10052

// SetupTimeout bounds how long a service waits at start for JetStream (a
// cluster still electing its leader answers nothing for a few seconds).
const SetupTimeout = 2 * time.Minute

// Retry runs a JetStream setup call until it succeeds, ctx ends or
// SetupTimeout passes, backing off between tries.
func Retry(ctx context.Context, what string, fn func(context.Context) error) error {
	deadline := time.Now().Add(SetupTimeout)
	wait := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && ((apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408) || apiErr.ErrorCode == errStreamInvalidConfig) {
			return fmt.Errorf("natsx: %s: %w", what, err) // refused, not unready: retrying will not help
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("natsx: %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
