package edge

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// adminBody is every field an admin route reads from a body.
type adminBody struct {
	Code      *string    `json:"code"`
	Name      *string    `json:"name"`
	Status    *string    `json:"status"`
	ExpiredAt *time.Time `json:"expiredAt"`
	ExpiresAt *time.Time `json:"expiresAt"` // the reference's dashboard sent this spelling
	// RetentionDays sets how long a partner's events are kept.
	RetentionDays *int `json:"retentionDays"`
	// Partner and key settings.
	RateLimit        *int     `json:"rateLimit"`
	RequireSignature *bool    `json:"requireSignature"`
	Scopes           []string `json:"scopes"`
	SubSystemID      *string  `json:"subSystemId"` // binds a key to one sub-system
	GraceSeconds     *int     `json:"graceSeconds"`
}

const maxAdminBody = 16 << 10

// bodyFields are the fields each route's body may hold. A field a route
// does not read is refused naming it, rather than silently ignored (a PUT
// of a key with "status":"Revoked" used to answer 200 and change nothing).
// Names match exactly: JSON's case-insensitive matching would let "Name"
// through as "name".
var bodyFields = map[string][]string{
	api.PartnersCreate:   {"code", "name", "retentionDays", "rateLimit", "requireSignature"},
	api.PartnersUpdate:   {"code", "name", "status", "retentionDays", "rateLimit", "requireSignature"},
	api.SubSystemsCreate: {"code", "name"},
	api.SubSystemsUpdate: {"code", "name", "status"},
	api.KeysCreate:       {"name", "expiredAt", "expiresAt", "scopes", "subSystemId", "rateLimit", "requireSignature"},
	api.KeysUpdate:       {"name", "scopes", "subSystemId", "rateLimit", "requireSignature"},
	api.KeysRegenerate:   {"name", "expiredAt", "expiresAt", "graceSeconds"},
}

// checkFields refuses a body field the operation does not read, and the
// two spellings of the expiry at once.
func checkFields(data []byte, op string) error {
	allowed, ok := bodyFields[op]
	if !ok || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return nil // decodeAdminBody names what is wrong with it
	}
	var fields []apierr.FieldError
	for name := range top {
		if !slices.Contains(allowed, name) {
			fields = append(fields, apierr.FieldError{Field: name, Message: "is not accepted here; this route accepts " + strings.Join(allowed, ", ")})
		}
	}
	if _, a := top["expiredAt"]; a {
		if _, b := top["expiresAt"]; b {
			fields = append(fields, apierr.FieldError{Field: "expiresAt", Message: "send one of expiredAt and expiresAt, not both"})
		}
	}
	if len(fields) > 0 {
		slices.SortFunc(fields, func(a, b apierr.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return apierr.Invalid(fields...)
	}
	return nil
}

// decodeAdminBody reads an admin route's body. It never panics; every
// failure is a 4xx *apierr.Error naming the field. Times are bounded to the
// range every instant of the API lies in and handed on in UTC: an expiry
// whose offset put it in year 10000 once in UTC could not be stored.
func decodeAdminBody(data []byte, optional bool) (adminBody, error) {
	var b adminBody
	if optional && len(bytes.TrimSpace(data)) == 0 {
		return b, nil
	}
	if err := event.DecodeObject(data, &b); err != nil {
		return b, err
	}
	for _, f := range []struct {
		name string
		t    **time.Time
	}{{"expiredAt", &b.ExpiredAt}, {"expiresAt", &b.ExpiresAt}} {
		if *f.t == nil {
			continue
		}
		u := (*f.t).UTC()
		if err := instant.Check(u); err != nil {
			return b, apierr.Invalid(apierr.FieldError{Field: f.name, Message: err.Error()})
		}
		*f.t = &u
	}
	return b, nil
}

// builder makes a registry request from the route parameters and body.
type builder func(p httprouter.Params, r *http.Request, b adminBody) (api.Request, error)

// route forwards an admin route to a registry operation.
type route struct {
	method, path, op string
	build            builder
	body             bool   // reads a JSON body
	status           int    // success status
	msg              string // success message
	location         func(data json.RawMessage) string
}

func ids(p httprouter.Params, r *http.Request, b adminBody) (api.Request, error) {
	return api.Request{PartnerID: p.ByName("id"), SubSystemID: p.ByName("subId"), KeyID: p.ByName("keyId")}, nil
}

func withBody(p httprouter.Params, r *http.Request, b adminBody) (api.Request, error) {
	req, _ := ids(p, r, b)
	req.Code, req.Name, req.Status, req.ExpiredAt, req.RetentionDays = b.Code, b.Name, b.Status, b.ExpiredAt, b.RetentionDays
	if req.ExpiredAt == nil {
		req.ExpiredAt = b.ExpiresAt
	}
	req.RateLimit, req.RequireSignature, req.Scopes, req.BindSubSystemID, req.GraceSeconds =
		b.RateLimit, b.RequireSignature, b.Scopes, b.SubSystemID, b.GraceSeconds
	return req, nil
}

func withCode(p httprouter.Params, r *http.Request, b adminBody) (api.Request, error) {
	req, _ := ids(p, r, b)
	code := p.ByName("code")
	req.Code = &code
	return req, nil
}

func includeDeleted(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("includeDeleted")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, apierr.New(apierr.InvalidParameter, "includeDeleted must be true or false")
	}
	return b, nil
}

func listPage(p httprouter.Params, r *http.Request, b adminBody) (api.Request, error) {
	q := r.URL.Query()
	var req api.Request
	var err error
	for _, f := range []struct {
		name string
		dst  *int
	}{{"page", &req.Page}, {"pageSize", &req.PageSize}} {
		if v := q.Get(f.name); v != "" {
			if *f.dst, err = strconv.Atoi(v); err != nil {
				return req, apierr.New(apierr.InvalidParameter, "%s must be a whole number", f.name)
			}
			if *f.dst < 1 {
				return req, apierr.New(apierr.InvalidParameter, "%s must be 1 or more", f.name)
			}
		}
	}
	req.IncludeDeleted, err = includeDeleted(r)
	return req, err
}

func listSubs(p httprouter.Params, r *http.Request, b adminBody) (api.Request, error) {
	req, _ := ids(p, r, b)
	var err error
	req.IncludeDeleted, err = includeDeleted(r)
	return req, err
}

func locationOf(path func(id string) string) func(json.RawMessage) string {
	return func(data json.RawMessage) string {
		var v struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(data, &v)
		return path(v.ID)
	}
}

func (s *Server) adminRoutes() {
	partner := func(id string) string { return "/api/v1/partners/" + id }
	const P, S, K = "/api/v1/partners", "/api/v1/partners/:id/sub-systems", "/api/v1/partners/:id/api-keys"
	routes := []route{
		{"GET", P, api.PartnersList, listPage, false, 200, "", nil},
		{"POST", P, api.PartnersCreate, withBody, true, 201, "Partner created successfully", nil},
		{"GET", P + "/:id", api.PartnersGet, ids, false, 200, "", nil},
		{"PUT", P + "/:id", api.PartnersUpdate, withBody, true, 200, "Partner updated successfully", nil},
		{"DELETE", P + "/:id", api.PartnersDelete, ids, false, 200, "Partner deleted; its keys are revoked and its sub-systems disabled", nil},
		{"PATCH", P + "/:id/toggle-status", api.PartnersToggle, ids, false, 200, "Partner status updated successfully", nil},
		{"GET", "/api/v1/_by-code/partners/:code", api.PartnersByCode, withCode, false, 200, "", nil},

		{"POST", S, api.SubSystemsCreate, withBody, true, 201, "Sub-system created successfully", nil},
		{"GET", S, api.SubSystemsList, listSubs, false, 200, "", nil},
		{"GET", S + "/:subId", api.SubSystemsGet, ids, false, 200, "", nil},
		{"PUT", S + "/:subId", api.SubSystemsUpdate, withBody, true, 200, "Sub-system updated successfully", nil},
		{"DELETE", S + "/:subId", api.SubSystemsDelete, ids, false, 200, "Sub-system deleted successfully", nil},
		{"PATCH", S + "/:subId/toggle-status", api.SubSystemsToggle, ids, false, 200, "Sub-system status updated successfully", nil},
		{"GET", "/api/v1/_by-code/sub-systems/:id/:code", api.SubSystemsByCode, withCode, false, 200, "", nil},
		{"GET", "/api/v1/sub-systems", api.SubSystemsAll, ids, false, 200, "", nil},

		{"POST", K, api.KeysCreate, withBody, true, 201, "API key created. Save it now: it will not be shown again", nil},
		{"GET", K, api.KeysList, ids, false, 200, "", nil},
		{"DELETE", K + "/:keyId", api.KeysRevoke, ids, false, 200, "API key revoked successfully", nil},
		{"PUT", K + "/:keyId", api.KeysUpdate, withBody, true, 200, "API key updated successfully", nil},
		{"POST", K + "/:keyId/regenerate", api.KeysRegenerate, withBody, true, 201, "API key regenerated; the old key is revoked, or expires after graceSeconds. Save the new one now: it will not be shown again", nil},
	}
	routes[1].location = locationOf(partner)
	routes[7].location = func(data json.RawMessage) string {
		var v tenant.SubSystem
		_ = json.Unmarshal(data, &v)
		return partner(v.PartnerID) + "/sub-systems/" + v.ID
	}
	for _, rt := range routes {
		s.handle(rt.method, rt.path, s.forward(rt))
	}
}

// forward serves an admin route by calling the registry.
func (s *Server) forward(rt route) handler {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params, rs *reqState) (reply, error) {
		if err := s.requireAdmin(r); err != nil {
			return reply{}, err
		}
		var b adminBody
		if rt.body {
			data, err := s.readBody(w, r, rs, maxAdminBody)
			if err != nil {
				return reply{}, err
			}
			// Regenerate may come with no body at all.
			if b, err = decodeAdminBody(data, rt.op == api.KeysRegenerate); err != nil {
				return reply{}, err
			}
			if err := checkFields(data, rt.op); err != nil {
				return reply{}, err
			}
		}
		req, err := rt.build(p, r, b)
		if err != nil {
			return reply{}, err
		}
		if req.PartnerID != "" && !tenant.ValidID(req.PartnerID) {
			return reply{}, apierr.New(apierr.PartnerNotFound, "partner not found: %s is not a partner id", quote(req.PartnerID))
		}
		if req.SubSystemID != "" && !tenant.ValidID(req.SubSystemID) {
			return reply{}, apierr.New(apierr.SubSystemNotFound, "sub-system not found: %s is not a sub-system id", quote(req.SubSystemID))
		}
		rs.partnerID = req.PartnerID
		var data json.RawMessage
		if err := natsx.Call(asAdmin(r), s.nc, subject.Registry(rt.op), req, &data); err != nil {
			return reply{}, err
		}
		if rt.method != http.MethodGet {
			// This edge need not wait for the broadcast to forget what it
			// just changed: a request right after the answer sees the change.
			s.cache.Apply(api.Change{PartnerID: req.PartnerID, KeyID: req.KeyID})
		}
		if rt.location != nil {
			w.Header().Set("Location", rt.location(data))
		}
		return reply{status: rt.status, data: data, msg: rt.msg}, nil
	}
}
