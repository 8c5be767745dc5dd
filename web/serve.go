// Package web serves the browser side of sockjsd: the pinned sockjs-client
// from npm, our wrapper around it and the demo page. cmd/server and the
// browser tests mount the same handlers, so the tests exercise what users
// get.
package web

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/gorilla/mux"
)

// ClientPath is where the npm copy of sockjs-client is served; the iframe
// page loads ClientPath + "sockjs.min.js" (the server's -sockjs-url default).
const ClientPath = "/sockjs-client/"

// DefaultDir is the browser side's directory relative to the repository
// root: the demo page in public/, the npm client in node_modules/.
const DefaultDir = "web/sockjs-client"

// Mount serves dir's node_modules/sockjs-client/dist at ClientPath and
// dir/public at "/". Register it after the SockJS services: "/" matches every
// path. A missing npm install is not fatal (one warning is logged): /info
// and the non-iframe transports work without it.
func Mount(r *mux.Router, dir string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	dist := filepath.Join(dir, "node_modules", "sockjs-client", "dist")
	if _, err := os.Stat(filepath.Join(dist, "sockjs.min.js")); err != nil {
		log.Warn("sockjs-client is not installed: the iframe transports and the demo page will not work; run `make deps`", "looked_in", dist)
	}
	r.PathPrefix(ClientPath).Handler(noSniff(http.StripPrefix(ClientPath, http.FileServer(http.Dir(dist)))))
	r.PathPrefix("/").Handler(noSniff(http.FileServer(http.Dir(filepath.Join(dir, "public")))))
}

// noSniff stops browsers from running a file as another type than the one
// it is served as.
func noSniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
