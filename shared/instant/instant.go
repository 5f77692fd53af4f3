// Package instant bounds every time the API accepts or computes, so each one
// serialises (RFC 3339, Cassandra timestamps, Go arithmetic) without
// overflow. Inputs outside [Min, Max) are refused with 400 naming the field.
package instant

import (
	"fmt"
	"time"
)

var (
	// Min is the earliest instant accepted: the Unix epoch.
	Min = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	// Max is the first instant no longer accepted. Far enough for any
	// expiry or report range, far from year 10000 where RFC 3339 and the
	// JSON encoder stop.
	Max = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Range is the accepted range as people read it, for error messages.
const Range = "between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z"

// Valid reports whether t is in [Min, Max).
func Valid(t time.Time) bool { return !t.Before(Min) && t.Before(Max) }

// Check answers nil for a valid t, or an error that states the range.
func Check(t time.Time) error {
	if Valid(t) {
		return nil
	}
	return fmt.Errorf("must be %s (UTC)", Range)
}
