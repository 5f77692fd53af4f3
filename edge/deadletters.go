package edge

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/tenant"
)

// deadLetterRoutes serve a partner's dead letters through the workers'
// dead-letter service. Replay and discard are the admin's; the list is
// also the partner's own, with a key of the report scope (the workers check
// the forwarded key again), so a client sees what was not stored and why.
func (s *Server) deadLetterRoutes() {
	const base = "/api/v1/partners/:id/dead-letters"
	call := func(op string, build func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (dlqapi.Request, error), msg string) handler {
		return func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
			ctx := asAdmin(r)
			if op == dlqapi.List {
				confined, cctx, err := s.reportCredential(r.Context(), r)
				if err != nil {
					return reply{}, err
				}
				if confined != "" && confined != p.ByName("id") {
					return reply{}, apierr.New(apierr.PartnerNotFound, "partner not found")
				}
				ctx = cctx
			} else if err := s.requireAdmin(r); err != nil {
				return reply{}, err
			}
			id := p.ByName("id")
			if !tenant.ValidID(id) {
				return reply{}, apierr.New(apierr.PartnerNotFound, "partner not found: %s is not a partner id", quote(id))
			}
			rs.partnerID = id
			req, err := build(w, r, p, rs)
			if err != nil {
				return reply{}, err
			}
			req.PartnerID = id
			var data json.RawMessage
			if err := natsx.Call(ctx, s.nc, dlqapi.Subject(op), req, &data); err != nil {
				return reply{}, err
			}
			return ok(data, msg), nil
		}
	}
	s.handle(http.MethodGet, base, call(dlqapi.List, func(_ http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *reqState) (dlqapi.Request, error) {
		var req dlqapi.Request
		q := r.URL.Query()
		if v := q.Get("after"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return req, apierr.New(apierr.InvalidParameter, "after must be a dead-letter sequence number (the next of the previous page)")
			}
			req.After = n
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > dlqapi.MaxPage {
				return req, apierr.New(apierr.InvalidParameter, "limit must be 1-%d", dlqapi.MaxPage)
			}
			req.Limit = n
		}
		return req, nil
	}, ""))
	s.handle(http.MethodPost, base+"/replay", call(dlqapi.Replay, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, rs *reqState) (dlqapi.Request, error) {
		var req dlqapi.Request
		data, err := s.readBody(w, r, rs, maxAdminBody)
		if err != nil {
			return req, err
		}
		if strings.TrimSpace(string(data)) == "" {
			return req, nil // every dead letter of the partner
		}
		var b struct {
			Seqs []uint64 `json:"seqs"`
		}
		if err := event.DecodeObject(data, &b); err != nil {
			return req, err
		}
		req.Seqs = b.Seqs
		return req, nil
	}, "Dead letters replayed into the event stream; any that fail again come back with a new sequence"))
	s.handle(http.MethodDelete, base+"/:seq", call(dlqapi.Discard, func(_ http.ResponseWriter, _ *http.Request, p httprouter.Params, _ *reqState) (dlqapi.Request, error) {
		n, err := strconv.ParseUint(p.ByName("seq"), 10, 64)
		if err != nil || n == 0 {
			return dlqapi.Request{}, apierr.New(apierr.NotFound, "dead letter %s not found", quote(p.ByName("seq")))
		}
		return dlqapi.Request{Seq: n}, nil
	}, "Dead letter discarded"))
}
