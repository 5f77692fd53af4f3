package edge

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
)

// Every route is documented, and every documented route exists.
func TestOpenAPI(t *testing.T) {
	s := docServer(t)
	registered := map[string]bool{}
	for _, r := range s.Routes() {
		registered[r] = true
		if _, ok := docs[r]; !ok {
			t.Errorf("route %s has no OpenAPI entry", r)
		}
	}
	for r := range docs {
		if !registered[r] {
			t.Errorf("documented route %s does not exist", r)
		}
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/openapi/v1.json", nil))
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("document: %v %q", err, w.Body.String()[:min(200, w.Body.Len())])
	}
	ops, preflights := 0, 0
	for path, item := range doc.Paths {
		ops += len(item)
		if _, ok := item["options"]; ok {
			preflights++
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("OPTIONS", path, nil))
			if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("OPTIONS %s is documented but answers %d", path, rec.Code)
			}
		}
	}
	if preflights != len(s.preflights) || preflights < 10 {
		t.Errorf("%d preflights documented, %d served", preflights, len(s.preflights))
	}
	if ops != len(docs)+preflights {
		t.Fatalf("%d operations in the document, %d documented and %d preflights", ops, len(docs), preflights)
	}
	// Every error code and the headers of every answer are documented.
	track, _ := json.Marshal(doc.Paths["/api/v1/tracking"]["post"])
	for _, c := range apierr.Codes() {
		if !strings.Contains(string(track), `"`+string(c)+`"`) {
			t.Errorf("error code %s is not documented", c)
		}
	}
	for _, h := range []string{"X-Request-Id", "X-Content-Type-Options", "Retry-After"} {
		if !strings.Contains(string(track), `"`+h+`"`) {
			t.Errorf("header %s is not documented", h)
		}
	}
	// The query parameters documented are those the handlers accept.
	for route, accepted := range map[string][]string{
		"GET /api/v1/reports/sub-systems/{id}":     subSystemReportParams,
		"GET /api/v1/reports/partners/{id}":        partnerReportParams,
		"GET /api/v1/reports/partners/{id}/events": eventsParams,
	} {
		var names []string
		for _, q := range queryDocs[route] {
			names = append(names, q.name)
		}
		if strings.Join(names, ",") != strings.Join(accepted, ",") {
			t.Errorf("%s documents %v, accepts %v", route, names, accepted)
		}
	}
	for route := range queryDocs {
		if !registered[route] {
			t.Errorf("query parameters documented for %s, which does not exist", route)
		}
		method, path, _ := strings.Cut(route, " ")
		op, _ := json.Marshal(doc.Paths[path][strings.ToLower(method)])
		for _, q := range queryDocs[route] {
			if !strings.Contains(string(op), `"name":"`+q.name+`"`) {
				t.Errorf("%s: parameter %s is not in the document", route, q.name)
			}
		}
	}
	keyList, _ := json.Marshal(doc.Paths["/api/v1/partners/{id}/api-keys"]["get"])
	if strings.Contains(string(keyList), `"hash"`) || strings.Contains(string(keyList), `"signingSecret"`) {
		t.Fatal("the key list documents a secret")
	}
	created, _ := json.Marshal(doc.Paths["/api/v1/partners/{id}/api-keys"]["post"])
	if !strings.Contains(string(created), `"apiKey"`) || !strings.Contains(string(created), `"signingSecret"`) {
		t.Fatal("key creation does not document the key and signing secret it returns")
	}
}

// OPTIONS outside the documented preflights is a 405 with the envelope,
// as the document says, not the router's silent 200.
func TestOptionsOnlyWherePreflightsAre(t *testing.T) {
	s := docServer(t)
	for path, want := range map[string]int{"/api/v1/partners": 405, "/openapi/v1.json": 405, "/api/v1/tracking": 204, "/v1/t": 204} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("OPTIONS", path, nil))
		if w.Code != want || (want == 405 && !strings.Contains(w.Body.String(), `"method_not_allowed"`)) {
			t.Errorf("OPTIONS %s: %d %s, want %d", path, w.Code, w.Body.String(), want)
		}
		if want == 405 && (strings.Contains(w.Header().Get("Allow"), "OPTIONS") || w.Header().Get("Allow") == "") {
			t.Errorf("OPTIONS %s: Allow %q lists what is refused", path, w.Header().Get("Allow"))
		}
	}
}

// Every field of a report or a page of events says what it means, and the
// bounded parameters carry their bounds as schema keywords.
func TestOpenAPIDescribesReports(t *testing.T) {
	s := docServer(t)
	doc := s.openAPI()
	paths := doc["paths"].(map[string]any)
	var walk func(where string, sc map[string]any)
	walk = func(where string, sc map[string]any) {
		props, _ := sc["properties"].(map[string]any)
		for name, p := range props {
			ps := p.(map[string]any)
			if _, ok := ps["description"]; !ok && name != "partnerId" && name != "partnerName" && !strings.HasPrefix(name, "subSystemC") &&
				!strings.HasPrefix(name, "subSystemN") && name != "eventCount" && !(name == "subSystemId" && strings.Contains(where, "top")) &&
				!(name == "eventType" && strings.Contains(where, "top")) {
				t.Errorf("%s.%s has no description", where, name)
			}
			if items, ok := ps["items"].(map[string]any); ok && !strings.Contains(where, "events") {
				walk(where+"."+name, items)
			}
			for _, alt := range []string{"anyOf"} {
				if list, ok := ps[alt].([]any); ok {
					for _, a := range list {
						if m, ok := a.(map[string]any); ok {
							walk(where+"."+name, m)
						}
					}
				}
			}
		}
	}
	for _, path := range []string{"/api/v1/reports/sub-systems/{id}", "/api/v1/reports/partners/{id}", "/api/v1/reports/partners/{id}/events"} {
		op := paths[path].(map[string]any)["get"].(map[string]any)
		for _, status := range []string{"413", "415"} { // a GET has no body to refuse
			if _, ok := op["responses"].(map[string]any)[status]; ok {
				t.Errorf("%s lists %s", path, status)
			}
		}
		if b, _ := json.Marshal(op["responses"]); strings.Contains(string(b), `"invalid_json"`) || strings.Contains(string(b), `"duplicate_event"`) ||
			!strings.Contains(string(b), `"invalid_parameter"`) {
			t.Errorf("%s: its errors list codes of bodies and writes, or not its own", path)
		}
		ok := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
		walk(path, ok["properties"].(map[string]any)["data"].(map[string]any))
		for _, p := range op["parameters"].([]any) {
			pm := p.(map[string]any)
			if pm["name"] == "granularity" && path != "/api/v1/reports/partners/{id}/events" {
				want := map[bool]string{true: "day", false: "hour"}[strings.Contains(path, "partners")]
				if d := pm["schema"].(map[string]any)["default"]; d != want {
					t.Errorf("%s: granularity's default %v, want %s", path, d, want)
				}
			}
			if pm["name"] == "top" || pm["name"] == "limit" {
				sc := pm["schema"].(map[string]any)
				if sc["minimum"] == nil || sc["maximum"] == nil || sc["default"] == nil {
					t.Errorf("%s: %s has no minimum, maximum and default: %v", path, pm["name"], sc)
				}
			}
		}
	}
}

// docServer is an edge with no bus, enough to list routes and serve the document.
func docServer(t *testing.T) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{"0123456789abcdef"}
	s, err := New(cfg, nil, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
