package allinone_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/jsonschema/v6"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
)

// The contract: the API document the edge serves is a valid OpenAPI 3.1
// document, and every answer the tests receive through sys.send is
// validated against it, so document and server cannot drift apart.

var contract struct {
	once sync.Once
	v    validator.Validator
	raw  []byte
	err  string
}

// contractOf builds the validator from the document the edge at root serves.
func contractOf(t testing.TB, root string) validator.Validator {
	contract.once.Do(func() {
		hr, err := http.Get(root + "/openapi/v1.json")
		if err != nil {
			contract.err = err.Error()
			return
		}
		defer hr.Body.Close()
		contract.raw, _ = io.ReadAll(hr.Body)
		doc, err := libopenapi.NewDocument(contract.raw)
		if err != nil {
			contract.err = err.Error()
			return
		}
		v, errs := validator.NewValidator(doc)
		if len(errs) > 0 {
			contract.err = errs[0].Error()
			return
		}
		contract.v = v
	})
	if contract.err != "" {
		t.Fatalf("the API document: %s", contract.err)
	}
	return contract.v
}

func TestOpenAPIDocumentValid(t *testing.T) {
	s := start(t, t.TempDir())
	v := contractOf(t, strings.TrimSuffix(s.base, "/api/v1"))
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("%s", e.Error())
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s", se.Reason, se.FieldPath+" "+se.KeywordLocation)
			}
		}
	}
}

// checkContract validates one answer against the document.
func checkContract(t testing.TB, root string, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	v := contractOf(t, root)
	resp := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Request: req}
	if ok, errs := v.ValidateHttpResponse(req, resp); !ok {
		for _, e := range errs {
			if e.ValidationType == "path" && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
				continue // a route that does not exist: its 404 or 405 is no operation's
			}
			msg := e.Message + ": " + e.Reason
			for _, se := range e.SchemaValidationErrors {
				msg += "; " + se.Reason + " at " + se.FieldPath
			}
			t.Errorf("contract: %s %s answered %d, not as documented: %s (body %.300s)", req.Method, req.URL.Path, status, msg, body)
		}
	}
}

// TestOpenAPILint holds the document to what linters (Redocly's among
// them) and client generators expect beyond the 3.1 meta-schema: every
// schema is a valid JSON Schema 2020-12 (no "data": null), every operation
// has a unique operationId, declared security (public ones: none), path
// parameters, a 4xx answer; the document names its servers.
func TestOpenAPILint(t *testing.T) {
	s := start(t, t.TempDir())
	contractOf(t, strings.TrimSuffix(s.base, "/api/v1"))
	var doc struct {
		Servers []any                                 `json:"servers"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(contract.raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}
	compiler := jsonschema.NewCompiler()
	compiler.DefaultDraft(jsonschema.Draft2020)
	n := 0
	compile := func(where string, schema any) {
		n++
		url := fmt.Sprintf("mem://schema/%d.json", n)
		if err := compiler.AddResource(url, schema); err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if _, err := compiler.Compile(url); err != nil {
			t.Errorf("%s: not a valid JSON Schema: %v", where, err)
		}
	}
	ids := map[string]string{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			where := strings.ToUpper(method) + " " + path
			var op struct {
				OperationID string                      `json:"operationId"`
				Security    *[]any                      `json:"security"`
				Parameters  []struct{ Name, In string } `json:"parameters"`
				RequestBody *struct {
					Content map[string]struct{ Schema any } `json:"content"`
				} `json:"requestBody"`
				Responses map[string]struct {
					Content map[string]struct{ Schema any } `json:"content"`
				} `json:"responses"`
			}
			var generic map[string]any
			if err := json.Unmarshal(raw, &op); err != nil || json.Unmarshal(raw, &generic) != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s: operationId %s is also %s's", where, op.OperationID, other)
			}
			ids[op.OperationID] = where
			if op.Security == nil {
				t.Errorf("%s: no security (a public route declares [])", where)
			}
			for _, m := range regexp.MustCompile(`\{([A-Za-z]+)\}`).FindAllStringSubmatch(path, -1) {
				found := false
				for _, p := range op.Parameters {
					found = found || p.In == "path" && p.Name == m[1]
				}
				if !found {
					t.Errorf("%s: path parameter %s is not declared", where, m[1])
				}
			}
			has4xx := false
			for status, r := range op.Responses {
				has4xx = has4xx || strings.HasPrefix(status, "4")
				for ct, c := range r.Content {
					compile(fmt.Sprintf("%s %s %s", where, status, ct), c.Schema)
				}
			}
			if !has4xx && method != "options" { // a CORS preflight always answers 204
				t.Errorf("%s: no 4xx answer", where)
			}
			if op.RequestBody != nil {
				for ct, c := range op.RequestBody.Content {
					compile(where+" request "+ct, c.Schema)
				}
			}
			if params, ok := generic["parameters"].([]any); ok {
				for _, p := range params {
					compile(where+" parameter", p.(map[string]any)["schema"])
				}
			}
		}
	}
	if len(ids) < 40 {
		t.Fatalf("only %d operations", len(ids))
	}
}

// The API reference the edge serves renders the document in a real browser
// (Debian's chromium), under its Content-Security-Policy, from this edge
// alone.
func TestAPIReference(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: chromium is not installed (deploy/with-deps.sh installs it for make test)")
	}
	dir := nodeModules(t, "segment-browser")
	s := start(t, t.TempDir())
	root := strings.TrimSuffix(s.base, "/api/v1")
	contractOf(t, root)
	cmd := exec.Command("node", "reference.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PAGE="+root+"/openapi/", "CHROMIUM="+chromium)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("reference.mjs: %v\n%s\n%s", err, out, stderr)
	}
	var got struct {
		Operations, Filtered int
		Logs, URLs           []string
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Operations != len(docOperations(t)) || got.Filtered < 3 || got.Filtered >= got.Operations {
		t.Fatalf("rendered %d operations (document: %d), %d after filtering for dead-letters", got.Operations, len(docOperations(t)), got.Filtered)
	}
	if len(got.Logs) > 0 {
		t.Fatalf("the page logged (a CSP violation, a failed request?): %q", got.Logs)
	}
	for _, u := range got.URLs {
		if !strings.HasPrefix(u, root+"/") {
			t.Fatalf("the page loaded %s, not from the edge", u)
		}
	}
}

// docOperations lists "METHOD path" of the served document.
func docOperations(t *testing.T) []string {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(contract.raw, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for p, item := range doc.Paths {
		for m := range item {
			ops = append(ops, m+" "+p)
		}
	}
	return ops
}
