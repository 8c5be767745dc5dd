package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestSelfContainedBinary builds the binary as `make build` does (the npm
// sockjs-client embedded by the sockjsd_embed tag; an -overlay puts the
// npm file where make copies it) and runs it from an empty directory: the
// demo page, our scripts and the client all come from inside it, and the
// iframe page loads the service's own copy with the protocol's exact page.
func TestSelfContainedBinary(t *testing.T) {
	testenv.SkipIfShort(t, "the npm sockjs-client and a build")
	root := testenv.RepoRoot(t)
	pkg := testenv.NPMPackage(t, filepath.Join(root, "web", "sockjs-client"), "sockjs-client", "deps-client")
	tmp := t.TempDir()
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {
		filepath.Join(root, "web", "clientdist", "sockjs.min.js"): filepath.Join(pkg, "dist", "sockjs.min.js"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "overlay.json"), overlay, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "sockjsd")
	build := exec.Command("go", "build", "-tags", "sockjsd_embed", "-overlay", filepath.Join(tmp, "overlay.json"), "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, "-addr", addr)
	cmd.Dir = t.TempDir() // nothing to find here
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var logs strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() { // ends with the process at the latest
		logs.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "listening") {
			break
		}
	}
	if !strings.Contains(logs.String(), "listening") {
		t.Fatalf("server did not report listening:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "make deps") {
		t.Errorf("a self-contained binary warns:\n%s", logs.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	client, err := os.ReadFile(filepath.Join(pkg, "dist", "sockjs.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []struct{ path, want string }{
		{"/", `<section id="hub"`},
		{"/sockjsd.js", "SockJSD"},
		{"/hub-client.js", "SockJSD"},
		{"/sockjs-client/sockjs.min.js", string(client[:200])},
		{"/echo/sockjs.min.js", string(client[:200])},
	} {
		res, err := hc.Get("http://" + addr + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), c.want) {
			t.Errorf("GET %s: %d, want a body containing %.60q", c.path, res.StatusCode, c.want)
		}
	}
	// The page the official suite checks, byte for byte: the built-in
	// client is served by the binary itself, so no integrity attribute.
	res, err := hc.Get("http://" + addr + "/echo/iframe.html")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if want := testenv.ProtocolIframePage("/echo/sockjs.min.js"); res.StatusCode != 200 || string(b) != want {
		t.Errorf("GET /echo/iframe.html: %d\n%s\nwant the protocol's page byte for byte:\n%s", res.StatusCode, b, want)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// TestIframePageAsShipped: with the client that cmd/server serves itself
// (here from -client-dir, as the binary `make build` ships has it built
// in), every protocol service's iframe page is the protocol's page byte for
// byte, loading the copy under its own prefix: no integrity attribute, so
// the official suite's IframePage tests pass against the shipped binary.
func TestIframePageAsShipped(t *testing.T) {
	dir := t.TempDir()
	client := []byte("/* sockjs-client */")
	dist := filepath.Join(dir, "node_modules", "sockjs-client", "dist")
	if err := os.MkdirAll(dist, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "sockjs.min.js"), client, 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, "-client-dir", dir)
	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		res, err := hc.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(b)
	}
	for _, svc := range []string{"/echo", "/close", "/disabled_websocket_echo", "/cookie_needed_echo"} {
		if code, body := get(svc + "/iframe.html"); code != 200 || body != testenv.ProtocolIframePage(svc+"/sockjs.min.js") {
			t.Errorf("GET %s/iframe.html: %d\n%s\nwant the protocol's page byte for byte:\n%s", svc, code, body, testenv.ProtocolIframePage(svc+"/sockjs.min.js"))
		}
		if code, body := get(svc + "/sockjs.min.js"); code != 200 || body != string(client) {
			t.Errorf("GET %s/sockjs.min.js: %d %.60q, want the client", svc, code, body)
		}
	}
}
