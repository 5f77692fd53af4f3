package edge

import (
	"embed"
	"io/fs"
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
	servePages(rt, reference, referenceCSP, map[string]string{
		"/openapi/":              "reference/index.html",
		"/openapi/reference.js":  "reference/reference.js",
		"/openapi/reference.css": "reference/reference.css",
	})
}

// servePages serves pages built into the binary (path → file of fsys), for
// GET and HEAD, under csp; they name no one as referrer and share no
// browsing context with other sites.
func servePages(rt *httprouter.Router, fsys fs.FS, csp string, files map[string]string) {
	for path, file := range files {
		serve := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
			h := w.Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("Cache-Control", "no-cache")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
			http.ServeFileFS(w, r, fsys, file)
		}
		rt.GET(path, serve)
		rt.HEAD(path, serve)
	}
}
