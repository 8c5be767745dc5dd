package web

import (
	"bytes"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/transport"
)

// ClientPath is where the npm copy of sockjs-client is served; the demo
// page loads ClientPath + "sockjs.min.js".
const ClientPath = "/sockjs-client/"

// DefaultDir is the browser side's directory relative to the repository
// root: the demo page in public/, the npm client in node_modules/.
const DefaultDir = "web/sockjs-client"

// FixCommand is what builds a binary with the client inside.
const FixCommand = "make build"

//go:embed sockjs-client/public
var embedded embed.FS

// embeddedClient is sockjs-client's dist/sockjs.min.js when built with the
// sockjsd_embed tag (client_embed.go), else nil (client_none.go).

// startTime is the Last-Modified of built-in files.
var startTime = time.Now()

// Site is the browser side: the demo page, our scripts and, when
// available, sockjs-client.
type Site struct {
	client []byte       // sockjs.min.js, nil when not available
	files  http.Handler // public/
	index  []byte       // index.html pointing at the CDN, when client is nil
}

// New builds the browser side. dir empty: everything from the binary. dir
// set (a checkout's web/sockjs-client, for editing the demo live): public/
// and node_modules/ from there, each falling back to the built-in copy.
// When no sockjs-client is available, one warning says so and names the
// command that fixes it.
func New(dir string, log *slog.Logger) *Site {
	if log == nil {
		log = slog.Default()
	}
	public, _ := fs.Sub(embedded, "sockjs-client/public")
	s := &Site{client: embeddedClient}
	if dir != "" {
		if st, err := os.Stat(filepath.Join(dir, "public")); err == nil && st.IsDir() {
			public = os.DirFS(filepath.Join(dir, "public"))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "sockjs-client", "dist", "sockjs.min.js")); err == nil {
			s.client = b
		}
	}
	s.files = http.FileServerFS(public)
	if s.client == nil {
		log.Warn("sockjs-client is not built in: the demo page and the iframe transports load the pinned copy from "+transport.DefaultSockJSURL+
			" (integrity-checked), which a closed network cannot reach; build a self-contained binary with `"+FixCommand+"`",
			"client_dir", dir)
		if b, err := fs.ReadFile(public, "index.html"); err == nil {
			s.index = bytes.Replace(b, []byte(`<script src="`+ClientPath+`sockjs.min.js"></script>`),
				[]byte(`<script src="`+transport.DefaultSockJSURL+`" integrity="`+transport.DefaultSockJSIntegrity+`" crossorigin="anonymous"></script>`), 1)
		}
	}
	return s
}

// Client is sockjs-client's sockjs.min.js, or nil when it is not
// available. Give it to transport.Options.ClientScript so that each
// service's iframe page loads the same copy from the service.
func (s *Site) Client() []byte { return s.client }

// ServeHTTP serves sockjs-client at ClientPath and public/ at "/".
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch p := r.URL.Path; {
	case p == ClientPath+"sockjs.min.js" && s.client != nil:
		w.Header().Set("Content-Type", "application/javascript; charset=utf-8")
		http.ServeContent(w, r, "sockjs.min.js", startTime, bytes.NewReader(s.client))
	case len(p) >= len(ClientPath) && p[:len(ClientPath)] == ClientPath:
		http.NotFound(w, r)
	case (p == "/" || p == "/index.html") && s.index != nil:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "index.html", startTime, bytes.NewReader(s.index))
	default:
		s.files.ServeHTTP(w, r)
	}
}

// Mount serves the browser side from dir (see New) on a gorilla/mux
// router. Register it after the SockJS services: "/" matches every path.
// On an http.ServeMux register New(dir, log) at "/" instead.
func Mount(r *mux.Router, dir string, log *slog.Logger) *Site {
	s := New(dir, log)
	r.PathPrefix("/").Handler(s)
	return s
}
