package allinone_test

import (
	"testing"
)

// TestStateTransitions: what the admin API refuses once a key, partner or
// sub-system changed state (the race tests, registry/race_test.go, show the
// same holds under concurrency on both backends).
func TestStateTransitions(t *testing.T) {
	s := start(t, t.TempDir())
	a, subs, _ := s.tenant("Acme", "Web")
	K := "/partners/" + a + "/api-keys/"

	// A revoked key is neither changed nor regenerated.
	k := s.key(a, nil)
	s.must(200, "DELETE", K+k.ID, "admin", nil, nil)
	expectCode(t, s.do("POST", K+k.ID+"/regenerate", "admin", nil), 409, "key_revoked")
	expectCode(t, s.do("PUT", K+k.ID, "admin", map[string]any{"name": "back"}), 409, "key_revoked")
	expectCode(t, s.do("POST", "/tracking", k.APIKey, ev("Web", "x")), 401, "api_key_revoked")

	// A field a route does not read is refused naming it, never ignored:
	// a key is not revoked or given an expiry by PUT.
	live := s.key(a, nil)
	r := s.do("PUT", K+live.ID, "admin", map[string]any{"status": "Revoked", "expiredAt": "2020-01-01T00:00:00Z"})
	expectCode(t, r, 400, "validation_failed")
	if len(r.Error.Fields) != 2 || r.Error.Fields[0].Field != "expiredAt" || r.Error.Fields[1].Field != "status" {
		t.Fatalf("fields: %+v", r.Error.Fields)
	}
	expectCode(t, s.do("PUT", K+live.ID, "admin", map[string]any{"Name": "case-folded"}), 400, "validation_failed")
	expectCode(t, s.do("POST", "/partners/"+a+"/api-keys", "admin", map[string]any{"name": "x", "expiredAt": "2100-01-01T00:00:00Z", "expiresAt": "2100-01-01T00:00:00Z"}), 400, "validation_failed")
	expectCode(t, s.do("POST", K+live.ID+"/regenerate", "admin", map[string]any{"graceSeconds": 9223372037}), 400, "validation_failed")
	s.must(202, "POST", "/tracking", live.APIKey, ev("Web", "x"), nil) // untouched by all of it

	// A key is rotated once, in its grace period or not.
	k = s.key(a, nil)
	var next createdKey
	s.must(201, "POST", K+k.ID+"/regenerate", "admin", map[string]any{"graceSeconds": 3600}, &next)
	for i := 0; i < 3; i++ {
		expectCode(t, s.do("POST", K+k.ID+"/regenerate", "admin", map[string]any{"graceSeconds": 3600}), 409, "key_rotated")
	}
	s.must(202, "POST", "/tracking", k.APIKey, ev("Web", "x"), nil) // still in grace
	s.must(202, "POST", "/tracking", next.APIKey, ev("Web", "x"), nil)

	// Codes are unique up to case; a record is found by any case of its code.
	expectCode(t, s.do("POST", "/partners", "admin", map[string]string{"code": "ACME", "name": "dup"}), 409, "code_taken")
	expectCode(t, s.do("POST", "/partners/"+a+"/sub-systems", "admin", map[string]string{"code": "web", "name": "dup"}), 409, "code_taken")
	s.must(202, "POST", "/tracking", next.APIKey, ev("WEB", "x"), nil)
	_ = subs

	// A deleted partner stays deleted, and nothing of it ingests.
	s.must(200, "DELETE", "/partners/"+a, "admin", nil, nil)
	expectCode(t, s.do("PATCH", "/partners/"+a+"/toggle-status", "admin", nil), 409, "partner_deleted")
	expectCode(t, s.do("POST", "/tracking", next.APIKey, ev("Web", "x")), 403, "partner_inactive")
	s.must(200, "DELETE", "/partners/"+a, "admin", nil, nil) // idempotent: finishes and announces again
}
