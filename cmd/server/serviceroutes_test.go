package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

func TestRouteMayMatchUnder(t *testing.T) {
	for _, tc := range []struct {
		tpl    string
		exact  bool
		prefix string
		want   bool
	}{
		{"/metrics", true, "/echo", false},
		{"/echo", true, "/echo", true},
		{"/echo/info", true, "/echo", true},
		{"/echoes", true, "/echo", false},
		{"/echoes/", false, "/echo", false},
		{"/", false, "/echo", true}, // a catch-all before the service
		{"/ec", false, "/echo", true},
		{"/echo/", false, "/echo", true},
		{"/echo/x/", false, "/echo", true},
		{"/api/{name}", true, "/echo", false},
		{"/{any}", true, "/echo", true},
		{"/exec/", false, "/exec/cat", true},
		{"/exec/dog", true, "/exec/cat", false},
	} {
		if got := routeMayMatchUnder(tc.tpl, tc.exact, tc.prefix); got != tc.want {
			t.Errorf("routeMayMatchUnder(%q, exact %v, %q) = %v, want %v", tc.tpl, tc.exact, tc.prefix, got, tc.want)
		}
	}
}

// TestServiceRoutesAsRouter: every request answered ahead of the router
// goes where the router would have sent it, and a service behind a route
// that may take some of its paths is left to the router.
func TestServiceRoutesAsRouter(t *testing.T) {
	app := func(s *session.Session) { _, _ = s.Recv(t.Context()) }
	echo := transport.New("/echo", transport.Options{}, app)
	shadowed := transport.New("/shadowed", transport.Options{}, app)
	nested := transport.New("/a/b", transport.Options{}, app)
	r := mux.NewRouter()
	r.SkipClean(true)
	earlier := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	r.Handle("/metrics", earlier)
	r.Handle("/shadowed/info", earlier)
	services.Mount(r, echo, shadowed, nested)
	r.PathPrefix("/").Handler(earlier)

	sr, ok := serviceRoutesFor(r, []*transport.Handler{echo, shadowed, nested}).(*serviceRoutes)
	if !ok {
		t.Fatal("no service answered ahead of the router")
	}
	var got []string
	for _, s := range sr.services {
		got = append(got, s.prefix)
	}
	if want := []string{"/echo", "/a/b"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("services ahead of the router: %q, want %q", got, want)
	}
	for _, p := range []string{"/echo", "/echo/", "/echo/info", "/echo/000/abc/xhr", "/echo//", "/echoes", "/metrics",
		"/shadowed/info", "/shadowed/000/abc/xhr", "/a/b/info", "/a/bc", "/a", "/"} {
		req := httptest.NewRequest(http.MethodPost, p, nil)
		var m mux.RouteMatch
		var want http.Handler
		if r.Match(req, &m) {
			want = m.Handler
		}
		var fast http.Handler
		for _, s := range sr.services {
			if p == s.prefix || len(p) > len(s.prefix) && p[:len(s.prefix)+1] == s.prefix+"/" {
				fast = s.h
				break
			}
		}
		if fast != nil && fast != want {
			t.Errorf("%s: answered ahead of the router by %v, the router picks %v", p, fast, want)
		}
	}
}

// TestServiceRoutesShipped: the shipped server answers every SockJS
// service ahead of its router, and still serves the rest through it.
func TestServiceRoutesShipped(t *testing.T) {
	cfg, err := parseConfig([]string{"-client-dir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := newServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.http.Handler)
	defer ts.Close()
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/echo", 200, "Welcome to SockJS!\n"},
		{"/echo/", 200, "Welcome to SockJS!\n"},
		{"/hub", 200, "Welcome to SockJS!\n"},
		{"/echo/a/b/c/d", 404, "404 Error: Page not found\n"},
		{"/healthz", 200, "ok\n"},
	} {
		res, err := ts.Client().Get(ts.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || string(b) != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, res.StatusCode, b, tc.status, tc.body)
		}
	}
	sr, ok := srv.front.(*serviceRoutes)
	if !ok || len(sr.services) != len(srv.services) {
		t.Fatalf("%T: not every one of the %d services is answered ahead of the router", srv.front, len(srv.services))
	}
}
