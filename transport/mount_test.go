package transport_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// TestRouters: a service answers the protocol's URLs the same on
// gorilla/mux (SkipClean and Mount) and on net/http's ServeMux (wrapped in
// KeepPaths), including the 404 of "<prefix>//" that a cleaning router
// would turn into a redirect, and leaves other paths to the router.
func TestRouters(t *testing.T) {
	other := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "other") })
	routers := []struct {
		name  string
		build func(h *transport.Handler) http.Handler
	}{
		{"gorilla/mux", func(h *transport.Handler) http.Handler {
			r := mux.NewRouter()
			r.SkipClean(true)
			gorillamux.Mount(r, h)
			r.PathPrefix("/").Handler(other)
			return r
		}},
		{"http.ServeMux", func(h *transport.Handler) http.Handler {
			m := http.NewServeMux()
			m.Handle("/echo", h)
			m.Handle("/echo/", h)
			m.Handle("/", other)
			return transport.KeepPaths(m, h)
		}},
	}
	cases := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/echo", "", 200, "Welcome to SockJS!\n"},
		{"GET", "/echo/", "", 200, "Welcome to SockJS!\n"},
		{"GET", "/echo/info", "", 200, `"websocket":true`},
		{"GET", "/echo//", "", 404, ""},
		{"GET", "/echo///", "", 404, ""},
		{"GET", "/echo/a/a/", "", 404, ""},
		{"GET", "/echo/../echo/info", "", 404, ""},
		{"POST", "/echo/000/routers/xhr", "", 200, "o\n"},
		{"POST", "/echo/000/routers/xhr_send", `["x"]`, 204, ""},
		{"POST", "/echo/000/routers/xhr", "", 200, `a["x"]`},
		{"GET", "/elsewhere", "", 200, "other"},
		{"GET", "/echoes", "", 200, "other"},
	}
	noRedirect := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, rt := range routers {
		t.Run(rt.name, func(t *testing.T) {
			svc := services.Protocol(transport.Options{})[0] // /echo
			srv := httptest.NewServer(rt.build(svc))
			defer srv.Close()
			for _, c := range cases {
				req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				req.URL.Opaque = c.path // send the path as written, unclean
				res, err := noRedirect.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", c.method, c.path, err)
				}
				b, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if res.StatusCode != c.code || !strings.Contains(string(b), c.want) {
					t.Errorf("%s %s: %d %q, want %d containing %q", c.method, c.path, res.StatusCode, b, c.code, c.want)
				}
			}
			ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/echo/websocket", nil)
			if err != nil {
				t.Fatalf("raw websocket: %v", err)
			}
			defer ws.Close()
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteMessage(websocket.TextMessage, []byte("raw")); err != nil {
				t.Fatal(err)
			}
			if _, m, err := ws.ReadMessage(); err != nil || string(m) != "raw" {
				t.Errorf("raw websocket echo: %q %v", m, err)
			}
		})
	}
}

// TestServeMuxAloneRedirects is why KeepPaths exists: a bare ServeMux
// answers "/echo//" with a redirect, never reaching the service.
func TestServeMuxAloneRedirects(t *testing.T) {
	svc := services.Protocol(transport.Options{})[0]
	m := http.NewServeMux()
	m.Handle("/echo/", svc)
	srv := httptest.NewServer(m)
	defer srv.Close()
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(srv.URL + "/echo//")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode/100 != 3 {
		t.Errorf("bare ServeMux: %d; if it no longer redirects, KeepPaths's comment is out of date", res.StatusCode)
	}
}

// TestServeMuxNeedsNoGorilla: an application that serves a service on
// net/http's ServeMux (with KeepPaths) links no router it does not use:
// transport and everything it imports stay off gorilla/mux, which only
// transport/gorillamux brings in.
func TestServeMuxNeedsNoGorilla(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sockjsd/sockjsd/transport").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/gorilla/mux" {
			t.Fatal("package transport depends on github.com/gorilla/mux")
		}
	}
}
