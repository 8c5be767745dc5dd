package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t testing.TB) string { return testenv.RepoRoot(t) }

// newServer mounts the protocol services and the browser side from dir,
// as cmd/server does, and returns the server and what Mount logged.
func newServer(t *testing.T, dir string) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := mux.NewRouter()
	r.SkipClean(true)
	// As cmd/server: the services serve the site's client to their
	// iframe pages.
	site := New(dir, log)
	services.Mount(r, services.Protocol(transport.Options{Logger: log, ClientScript: site.Client()})...)
	r.PathPrefix("/").Handler(site)
	s := httptest.NewServer(r)
	t.Cleanup(s.Close)
	return s, &logs
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestMountServesClientAndDemo(t *testing.T) {
	dir := filepath.Join(repoRoot(t), DefaultDir)
	testenv.NPMPackage(t, dir, "sockjs-client", "deps-client")
	s, logs := newServer(t, dir)
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warning with the client installed: %s", logs)
	}
	cases := []struct {
		path, wantType, wantBody string
	}{
		{ClientPath + "sockjs.min.js", "javascript", "SockJS"},
		{"/echo/sockjs.min.js", "javascript", "SockJS"},
		{"/echo/iframe.html", "text/html", `<script src="/echo/sockjs.min.js"></script>`},
		{"/hub-client.js", "javascript", "SockJSD"},
		{"/sockjsd.js", "javascript", "SockJSD"},
		{"/demo.js", "javascript", "SockJSD.connect"},
		{"/demo.css", "text/css", "panel"},
		{"/", "text/html", `<section id="hub"`},
		{"/echo/info", "application/json", `"websocket":true`},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			code, h, body := get(t, s.URL+c.path)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if ct := h.Get("Content-Type"); !strings.Contains(ct, c.wantType) {
				t.Errorf("Content-Type %q, want %q", ct, c.wantType)
			}
			if !strings.Contains(body, c.wantBody) {
				t.Errorf("body does not contain %q", c.wantBody)
			}
		})
	}
}

// Without the npm install the server still serves /info and the
// non-iframe transports, and says once what is missing.
func TestMountWithoutClient(t *testing.T) {
	if embeddedClient != nil {
		t.Skip("built with the sockjsd_embed tag: the client is always there")
	}
	s, logs := newServer(t, t.TempDir())
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("got %d warnings, want 1: %s", n, logs)
	}
	if !strings.Contains(logs.String(), "sockjs-client is not built in") || !strings.Contains(logs.String(), "`"+FixCommand+"`") {
		t.Errorf("warning does not say what is missing and how to fix it: %s", logs)
	}
	if code, _, _ := get(t, s.URL+ClientPath+"sockjs.min.js"); code != http.StatusNotFound {
		t.Errorf("missing client: status %d, want 404", code)
	}
	// The demo page and the iframe page load the pinned CDN copy, checked
	// by its integrity hash.
	cdn := `<script src="` + transport.DefaultSockJSURL + `" integrity="` + transport.DefaultSockJSIntegrity + `" crossorigin="anonymous"></script>`
	for _, p := range []string{"/", "/echo/iframe.html"} {
		if code, _, body := get(t, s.URL+p); code != http.StatusOK || !strings.Contains(body, cdn) {
			t.Errorf("%s: status %d, does not load the pinned CDN copy:\n%s", p, code, body)
		}
	}
	// Our own files are built in whatever the directory holds.
	for _, p := range []string{"/sockjsd.js", "/hub-client.js", "/demo.css"} {
		if code, _, _ := get(t, s.URL+p); code != http.StatusOK {
			t.Errorf("%s: status %d", p, code)
		}
	}
	if code, _, body := get(t, s.URL+"/echo/info"); code != http.StatusOK || !strings.Contains(body, `"websocket":true`) {
		t.Errorf("/echo/info: status %d, body %q", code, body)
	}
	resp, err := http.Post(s.URL+"/echo/000/abc/xhr", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "o\n" {
		t.Errorf("xhr open: status %d, body %q", resp.StatusCode, b)
	}
}
