package edge

import (
	"embed"
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// The API reference: a page that renders /openapi/v1.json, built into the
// binary, so reading it needs no outside host.
//
//go:embed reference
var reference embed.FS

// referenceCSP lets the page load only from this edge, run no inline script
// and be framed by no one.
const referenceCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) referenceRoutes(rt *httprouter.Router) {
	for path, file := range map[string]string{
		"/openapi/":              "reference/index.html",
		"/openapi/reference.js":  "reference/reference.js",
		"/openapi/reference.css": "reference/reference.css",
	} {
		serve := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
			w.Header().Set("Content-Security-Policy", referenceCSP)
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, reference, file)
		}
		rt.GET(path, serve)
		rt.HEAD(path, serve)
	}
}
