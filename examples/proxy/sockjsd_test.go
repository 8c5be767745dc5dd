package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// The secrets and key of the sockjsd the tests run, given to the backend
// in its environment (as run.sh does).
const (
	testSecret = "example-proxy-secret"
	testAPIKey = "example-api-key"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// sockjsdBinary builds cmd/server once per test binary: the real sockjsd,
// which serves the npm sockjs-client from -client-dir.
func sockjsdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sockjsd-example-proxy-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "sockjsd"), "./cmd/server")
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "sockjsd")
}

// clientDir is what sockjsd's -client-dir takes: web/sockjs-client, with
// the npm sockjs-client installed (make deps-client).
func clientDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(t), "web", "sockjs-client")
	testenv.NPMPackage(t, dir, "sockjs-client", "deps-client")
	return dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitUp polls url until it answers 200, for up to d, failing early when
// exited is closed.
func waitUp(t *testing.T, url string, d time.Duration, exited <-chan struct{}, log fmt.Stringer) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for {
		if resp, err := client.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("exited before %s answered:\n%s", url, log)
		case <-time.After(20 * time.Millisecond): // poll interval, bounded by the deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s:\n%s", url, d, log)
		}
	}
}

// child is a process of a test, in a process group of its own, killed
// when the test ends; its output is shown when the test failed.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *testenv.Buffer
	exited chan struct{}
}

func startChild(t *testing.T, name string, env []string, argv ...string) (*child, <-chan string) {
	t.Helper()
	c := &child{name: name, out: &testenv.Buffer{}, exited: make(chan struct{})}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.cmd.Stderr = c.out
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	// The first line of stdout goes to the caller too, as it comes.
	first := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		first <- line
		_, _ = c.out.Write([]byte(line))
		_, _ = io.Copy(c.out, br)
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.kill(t)
		if t.Failed() {
			t.Logf("the output of %s:\n%s", name, c.out)
		}
	})
	return c, first
}

// kill ends the child's whole process group and waits for it.
func (c *child) kill(t *testing.T) {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit within 10s of SIGKILL", c.name)
	}
}

// startBackend starts lang's backend ("python" or "node") on a free
// loopback port, calling sockjsd at sockjsdURL, and returns its base URL.
func startBackend(t *testing.T, lang, sockjsdURL string) string {
	t.Helper()
	var argv []string
	switch lang {
	case "python":
		python, err := exec.LookPath("python3")
		if err != nil {
			testenv.Missing(t, "python3 on PATH (Debian: apt-get install python3)")
		}
		argv = []string{python, filepath.Join("python", "backend.py")}
	case "node":
		argv = []string{testenv.Node(t), filepath.Join("node", "backend.js")}
	default:
		t.Fatalf("no backend %q", lang)
	}
	argv = append(argv, "-v", "--listen", "127.0.0.1:0", "--sockjsd", sockjsdURL)
	c, first := startChild(t, "the "+lang+" backend",
		[]string{"PROXY_SECRET=" + testSecret, "SOCKJSD_API_KEY=" + testAPIKey, "PYTHONDONTWRITEBYTECODE=1"}, argv...)
	select {
	case line := <-first:
		i := strings.Index(line, "http://")
		if i < 0 {
			t.Fatalf("the %s backend did not start: %q\n%s", lang, line, c.out)
		}
		return strings.TrimSuffix(strings.TrimSpace(line[i:]), "/")
	case <-time.After(10 * time.Second):
		t.Fatalf("the %s backend did not print its address within 10s\n%s", lang, c.out)
	}
	return ""
}

// startSockjsd runs the real sockjsd on addr with /chat proxied to the
// backend at base (its hooks under /sockjs, its webhook at /webhook), as
// run.sh does, and waits until it is ready.
func startSockjsd(t *testing.T, addr, base string, extra ...string) {
	t.Helper()
	argv := append([]string{sockjsdBinary(t),
		"-addr", addr,
		"-proxy", "/chat=" + base + "/sockjs",
		"-proxy-secret", testSecret,
		"-webhook", base + "/webhook",
		"-hub-api-key", testAPIKey,
		"-allowed-origins", base,
		"-client-dir", clientDir(t),
	}, extra...)
	c, _ := startChild(t, "sockjsd", nil, argv...)
	waitUp(t, "http://"+addr+"/readyz", 20*time.Second, c.exited, c.out)
}
