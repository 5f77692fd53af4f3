package registry

import (
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/tenant"
)

// The replacement of a key keeps its expiry while that is in the future;
// an expired key's replacement gets the old key's lifetime from now (it
// used to get no expiry at all); a key without expiry stays without.
func TestReplacementExpiry(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	created := now.Add(-40 * 24 * time.Hour)
	for _, c := range []struct {
		name    string
		expires *time.Time
		want    *time.Time
	}{
		{"never expires", nil, nil},
		{"expires later", at(time.Hour), at(time.Hour)},
		{"expired: same lifetime from now", at(-10 * 24 * time.Hour), at(30 * 24 * time.Hour)},
		{"expired at creation: a minute", &created, at(time.Minute)},
	} {
		got := replacementExpiry(tenant.APIKey{CreatedAt: created, ExpiresAt: c.expires}, now)
		if (got == nil) != (c.want == nil) || got != nil && !got.Equal(*c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// A lifetime that would run past the accepted range is capped inside it.
	old := time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC)
	exp := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	got := replacementExpiry(tenant.APIKey{CreatedAt: old, ExpiresAt: &exp}, time.Date(2150, 1, 1, 0, 0, 0, 0, time.UTC))
	if got == nil || !instant.Valid(*got) {
		t.Fatalf("capped expiry: %v", got)
	}
}
