// Package reference holds the tests that compare this server with the
// servers people use today: sockjs-node 0.3.24 (the reference
// implementation, run under node) and igm/sockjs-go v3.0.2 (mounted in the
// test process), and that drive it with the real sockjs-client under node.
package reference

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/mux"
	igm "github.com/igm/sockjs-go/v3/sockjs"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t testing.TB) string { return testenv.RepoRoot(t) }

// nodeDir is e2e/node with its npm packages installed (make deps-node).
func nodeDir(t testing.TB) string {
	t.Helper()
	testenv.Node(t)
	dir := filepath.Join(repoRoot(t), "e2e", "node")
	for _, pkg := range []string{"sockjs", "sockjs-client"} {
		testenv.NPMPackage(t, dir, pkg, "deps-node")
	}
	return dir
}

// startOurs serves the protocol suite's services from this repository.
func startOurs(t testing.TB, opts transport.Options) string {
	t.Helper()
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(opts)...)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// startIgm serves the same services with igm/sockjs-go v3.0.2.
func startIgm(t testing.TB, responseLimit uint32) string {
	t.Helper()
	echo := func(s igm.Session) {
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if s.Send(m) != nil {
				return
			}
		}
	}
	base := igm.DefaultOptions
	base.ResponseLimit = responseLimit
	base.RawWebsocket = true
	base.SockJSURL = "/static/sockjs.min.js"
	wsOff := base
	wsOff.Websocket = false
	cookie := base
	cookie.JSessionID = igm.DefaultJSessionID
	r := mux.NewRouter()
	r.SkipClean(true)
	for _, s := range []struct {
		prefix string
		opts   igm.Options
		fn     func(igm.Session)
	}{
		{"/echo", base, echo},
		{"/close", base, func(s igm.Session) { _ = s.Close(3000, "Go away!") }},
		{"/disabled_websocket_echo", wsOff, echo},
		{"/cookie_needed_echo", cookie, echo},
	} {
		r.PathPrefix(s.prefix).Handler(igm.NewHandler(s.prefix, s.opts, s.fn))
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// startNode runs sockjs-node with the same services and returns its URL.
func startNode(t testing.TB, responseLimit int) string {
	t.Helper()
	dir := nodeDir(t)
	cmd := exec.Command("node", "reference-server.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RESPONSE_LIMIT="+strconv.Itoa(responseLimit))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	portc := make(chan int, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		var p struct{ Port int }
		_ = json.Unmarshal([]byte(line), &p)
		portc <- p.Port
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-portc:
		if p == 0 {
			t.Fatal("sockjs-node did not report its port")
		}
		// The port is printed from the listen callback: it is up.
		return "http://127.0.0.1:" + strconv.Itoa(p)
	case <-time.After(30 * time.Second):
		t.Fatal("sockjs-node did not start within 30s")
	}
	return ""
}
