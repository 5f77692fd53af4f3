package edge

import (
	"embed"
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// The admin console: a page over this edge's own API, built into the
// binary (no build step, no outside host at run time).
//
//go:embed console
var console embed.FS

// consoleCSP: only this edge's scripts, styles and API; no inline script,
// no framing. The credential lives in sessionStorage, so a script injected
// from elsewhere is what this policy keeps out.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) consoleRoutes(rt *httprouter.Router) {
	servePages(rt, console, consoleCSP, map[string]string{
		"/console/":            "console/index.html",
		"/console/console.js":  "console/console.js",
		"/console/console.css": "console/console.css",
		"/console/favicon.svg": "console/favicon.svg",
	})
	redirect := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	}
	rt.GET("/console", redirect)
	rt.HEAD("/console", redirect)
}
