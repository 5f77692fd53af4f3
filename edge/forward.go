package edge

import (
	"context"
	"net/http"
	"strings"

	"github.com/volcanion/tracking/shared/natsx"
)

// adminToken is the admin credential a request presents, as requireAdmin reads it.
func adminToken(r *http.Request) string {
	tok := r.Header.Get("X-Admin-Token")
	if auth := r.Header.Get("Authorization"); tok == "" && auth != "" {
		// The scheme is case-insensitive (RFC 9110 11.1).
		if len(auth) > 7 && strings.EqualFold(auth[:7], "Bearer ") {
			tok = strings.TrimSpace(auth[7:])
		}
	}
	return tok
}

// asAdmin is the context of a call made for an admin caller: the caller's
// own credential travels with it and the service checks it again, so the
// edge's NATS credential alone cannot do what an admin can.
func asAdmin(r *http.Request) context.Context {
	return natsx.WithAdminToken(r.Context(), adminToken(r))
}
