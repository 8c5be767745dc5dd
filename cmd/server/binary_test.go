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
	"github.com/sockjsd/sockjsd/transport"
)

// TestSelfContainedBinary builds the binary as `make build` does (the npm
// sockjs-client embedded by the sockjsd_embed tag; an -overlay puts the
// npm file where make copies it) and runs it from an empty directory: the
// demo page, our scripts and the client all come from inside it, and the
// iframe page loads the service's own copy.
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
		{"/echo/iframe.html", `<script src="/echo/sockjs.min.js" integrity="` + transport.Integrity(client) + `"`},
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
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}
