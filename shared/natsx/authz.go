package natsx

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
)

// HeaderAdminToken carries the admin credential of the caller an edge acts
// for. A service that guards an operation checks it itself: the edge's own
// NATS credential is not an admin credential. Only the service's role may
// subscribe to its request subjects, so the header is not seen by other
// roles (replies carry no credential).
const HeaderAdminToken = "Trk-Admin-Token"

type adminTokenKey struct{}

// WithAdminToken returns a context whose Calls forward tok to the service.
func WithAdminToken(ctx context.Context, tok string) context.Context {
	return context.WithValue(ctx, adminTokenKey{}, tok)
}

// HeaderAPIKey carries the partner API key the caller presented to the edge,
// for a service that checks the key itself (the reporter: a partner reads
// its own reports). Like the admin token, only the service's role may read
// the request.
const HeaderAPIKey = "Trk-Api-Key"

type apiKeyKey struct{}

// WithAPIKey returns a context whose Calls forward a partner's API key to
// the service, and open its answers sealed under that key.
func WithAPIKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, apiKeyKey{}, key)
}

// injectAdminToken sets the forwarded credentials of ctx, if any, on h.
func injectAdminToken(ctx context.Context, h nats.Header) {
	if tok, _ := ctx.Value(adminTokenKey{}).(string); tok != "" {
		h.Set(HeaderAdminToken, tok)
	}
	if key, _ := ctx.Value(apiKeyKey{}).(string); key != "" {
		h.Set(HeaderAPIKey, key)
	}
}

type requestHeadersKey struct{}

// RequestHeaders are the NATS headers of the request a Handler serves: a
// service that needs the query to authorise it (whose partner it is about)
// checks the forwarded credential in its HandlerFunc rather than in a Guard.
func RequestHeaders(ctx context.Context) nats.Header {
	h, _ := ctx.Value(requestHeadersKey{}).(nats.Header)
	return h
}

// Guard runs next only when check accepts the request's headers; otherwise
// it answers the refusal as Handler answers errors (code header and the
// *apierr.Error body). It wraps a Handler rather than living inside it, so
// each service decides which of its operations need which credential.
func Guard(log zerolog.Logger, op string, check func(nats.Header) error, next micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		if err := check(nats.Header(req.Headers())); err != nil {
			ae := apierr.From(err)
			// Never the token itself: only that the call was refused.
			log.Warn().Str("op", op).Str("code", string(ae.Code)).Msg("refused: no valid admin credential")
			body, _ := json.Marshal(ae)
			_ = req.Error(string(ae.Code), ae.Message, body)
			return
		}
		next.Handle(req)
	})
}
