package server

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/go-chi/chi/v5"
)

// consoleFS holds the web console: plain HTML, JavaScript modules and CSS,
// served as they are (no build step).
//
//go:embed console
var consoleFS embed.FS

// consoleTypes are the media types of the console's files, by extension:
// fixed here rather than read from the system's MIME tables, because a
// browser runs a module script only under a JavaScript type.
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// consoleCSP lets the console load only its own files and talk only to the
// gateway that served it (fetch and EventSource are same-origin).
const consoleCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleRoutes maps each console path to its file: "/" is index.html, every
// other file is served at /<name>. Built once from consoleFS; the handlers
// share the bytes.
var consoleRoutes = buildConsoleRoutes()

type consoleFile struct {
	name, contentType, etag string
	body                    []byte
}

func buildConsoleRoutes() map[string]consoleFile {
	entries, err := fs.ReadDir(consoleFS, "console")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	routes := map[string]consoleFile{}
	for _, e := range entries {
		contentType, ok := consoleTypes[path.Ext(e.Name())]
		if e.IsDir() || !ok {
			continue
		}
		body, err := consoleFS.ReadFile("console/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		f := consoleFile{name: e.Name(), contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: body}
		route := "/" + e.Name()
		if e.Name() == "index.html" {
			route = "/"
		}
		routes[route] = f
	}
	return routes
}

// mountConsole serves the web console on r: GET and HEAD of "/" and of each
// of its files. These routes are not part of the API and not in
// openapi.json (TestOpenAPIMatchesRouter leaves them out); any other path
// still gets the router's 404 problem.
func mountConsole(r chi.Router) {
	for route, f := range consoleRoutes {
		r.Get(route, f.serve)
		r.Head(route, f.serve)
	}
}

// serve answers with the file; ETag and Cache-Control: no-cache make a
// browser revalidate each time (a 304 when unchanged), so that a new
// gateway's console is picked up at once.
func (f consoleFile) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", consoleCSP)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
