// Package proxy_test runs the proxy examples' own tests, so that `go test
// ./...` (and `make test`) fails when a backend does: the Python backend's
// unittest and the Node backend's node --test. Each starts its backend as a
// process on a free loopback port with a fake sockjsd API beside it.
package proxy_test

import (
	"context"
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

// runTimeout bounds one language's whole suite (it takes about a second).
const runTimeout = 2 * time.Minute

// run runs name args in dir, in a process group of its own so that a
// timeout also ends the backend the suite started, and fails the test with
// the output when the command fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	out := &testenv.Buffer{}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	// Whatever the suite left behind (it stops its backend itself).
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not finish within %s:\n%s", name, strings.Join(args, " "), runTimeout, out)
	}
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	if testing.Verbose() {
		t.Logf("%s %s:\n%s", name, strings.Join(args, " "), out)
	}
}

func TestPythonBackend(t *testing.T) {
	testenv.SkipIfShort(t, "python3")
	python, err := exec.LookPath("python3")
	if err != nil {
		testenv.Missing(t, "python3 on PATH (Debian: apt-get install python3)")
	}
	// No __pycache__ in the source tree.
	run(t, "python", []string{"PYTHONDONTWRITEBYTECODE=1"}, python, "-m", "unittest", "-v", "test_backend")
}

func TestNodeBackend(t *testing.T) {
	node := testenv.Node(t)
	run(t, "node", nil, node, "--test", "backend.test.js")
}

// TestRunScript runs run.sh as `make example-proxy` does, with the real
// sockjsd and the Python backend on free ports: the page it prints loads,
// with the sockjs-client sockjsd serves; a session logs in through the
// proxy; and Ctrl-C (SIGINT to the group, as a terminal sends it) stops
// both.
func TestRunScript(t *testing.T) {
	testenv.SkipIfShort(t, "bash, python3 and sockjsd")
	for _, p := range []string{"bash", "python3"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Missing(t, p+" on PATH")
		}
	}
	sockjsdAddr, backendAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command("bash", "run.sh", "-client-dir", clientDir(t))
	cmd.Env = append(os.Environ(), "SOCKJSD="+sockjsdBinary(t), "SOCKJSD_ADDR="+sockjsdAddr, "BACKEND_ADDR="+backendAddr, "PYTHONDONTWRITEBYTECODE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("run.sh's output:\n%s", out)
		}
	})
	page := "http://" + backendAddr + "/"
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Chat page:  "+page+"\n") {
		select {
		case <-done:
			t.Fatal("run.sh ended before it printed the page's URL")
		case <-time.After(20 * time.Millisecond): // poll interval, bounded by the deadline
		}
		if time.Now().After(deadline) {
			t.Fatal("run.sh did not print the page's URL within 30s")
		}
	}

	status, body := get(t, page)
	clientURL := "http://" + sockjsdAddr + "/sockjs-client/sockjs.min.js"
	if status != 200 || !strings.Contains(body, `<script src="`+clientURL+`"></script>`) {
		t.Fatalf("GET %s: %d, want 200 and the page loading %s:\n%s", page, status, clientURL, body)
	}
	npm, err := os.ReadFile(filepath.Join(clientDir(t), "node_modules", "sockjs-client", "dist", "sockjs.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, clientURL); status != 200 || body != string(npm) {
		t.Fatalf("GET %s: %d and %d bytes, want 200 and the npm client's %d", clientURL, status, len(body), len(npm))
	}
	// A session through the proxy, as the page opens one over xhr-polling.
	chat := "http://" + sockjsdAddr + "/chat/000/" + testenv.NewID()
	if status, body := post(t, chat+"/xhr?user=alice&password=wonderland"); status != 200 || body != "o\n" {
		t.Fatalf("open a session: %d %q", status, body)
	}
	// The session is subscribed to the backend's channels before the
	// welcome is sent: a poll may bring the hub's "subscribed" answers
	// alone, and the welcome with the next.
	var polled []string
	for !strings.Contains(strings.Join(polled, ""), `\"type\":\"welcome\",\"user\":\"alice\"`) {
		if len(polled) == 3 {
			t.Fatalf("polls %q, want the backend's welcome within three", polled)
		}
		status, body := post(t, chat+"/xhr")
		if status != 200 || !strings.HasPrefix(body, "a[") {
			t.Fatalf("poll: %d %q, want messages", status, body)
		}
		polled = append(polled, body)
	}

	// Ctrl-C.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("run.sh did not stop within 15s of SIGINT")
	}
	for _, addr := range []string{sockjsdAddr, backendAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Ctrl-C", addr)
		}
	}
}

func get(t *testing.T, url string) (int, string) { return do(t, "GET", url) }

func post(t *testing.T, url string) (int, string) { return do(t, "POST", url) }

func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// TestReadmeExcerpts: every python and js block of README.md is the
// backends' code verbatim, so that the signature check it shows is the one
// that runs.
func TestReadmeExcerpts(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{"python": "python/backend.py", "js": "node/backend.js"}
	seen := 0
	rest := string(readme)
	for {
		_, after, ok := strings.Cut(rest, "\n```")
		if !ok {
			break
		}
		lang, body, _ := strings.Cut(after, "\n")
		block, tail, ok := strings.Cut(body, "```")
		if !ok {
			t.Fatal("README.md: an unclosed code block")
		}
		rest = tail
		src, ok := sources[lang]
		if !ok {
			continue
		}
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(code), block) {
			t.Errorf("README.md shows a %s block that is not in %s verbatim:\n%s", lang, src, block)
		}
		seen++
	}
	if seen < 3 {
		t.Errorf("found %d python and js blocks in README.md, want at least 3", seen)
	}
}
