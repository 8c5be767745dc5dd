//go:build unix

// Package procs runs the real processes of the end-to-end tests: sockjsd
// built from cmd/server, and any other program, each killed when its test
// ends, its output kept and shown when the test failed. Unix only: it
// kills process groups with signals.
package procs

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Server builds cmd/server once per test binary and returns its path.
// Call Cleanup from TestMain to remove it.
func Server(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sockjsd-e2e-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "server"), "./cmd/server")
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "server")
}

// Cleanup removes what Server built.
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// FreePort is testenv.FreePort: a loopback port below the kernel's
// ephemeral range, free a moment ago.
func FreePort(t testing.TB) int { return testenv.FreePort(t) }

// Proc is a child process, killed when the test ends.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Out  *testenv.Buffer // stdout and stderr
	done chan struct{}
}

// Start runs args; the process is killed when the test ends, and its
// output's tail logged if the test failed.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Out: &testenv.Buffer{}, done: make(chan struct{})}
	p.Cmd = exec.Command(args[0], args[1:]...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	// A group of its own, which Kill ends whole: nginx's workers outlived
	// a killed master (and stayed until the machine's next test run).
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, Tail(p.Out.String(), 3000))
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL to the process and its group (the children it
// started) and waits (10s at most) for the process to be gone.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL) // the group: its children too
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// WaitFor polls cond every 20ms until it holds or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// Status GETs url and returns its status (0 when it cannot connect).
func Status(url string) int {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Get GETs url and returns its body.
func Get(t testing.TB, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// Metric sums the samples of name in a Prometheus text exposition whose
// labels contain every one of labels (`endpoint="xhr"`).
func Metric(body, name string, labels ...string) (float64, error) {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("bad sample %q", line)
		}
		sum += v
	}
	return sum, nil
}

// HAProxy runs deploy/haproxy.cfg (round robin, no stickiness) with a
// free port for its frontend and nodes ("http://127.0.0.1:port", three at
// most) as its servers, backendLines added to its backend section, and
// returns its base URL once it answers /healthz.
func HAProxy(t testing.TB, nodes []string, backendLines ...string) string {
	t.Helper()
	return HAProxyOn(t, FreePort(t), nodes, backendLines...)
}

// HAProxyOn is HAProxy with its frontend on lbPort, for nodes that must
// know the balancer's URL before it runs (in -allowed-origins).
func HAProxyOn(t testing.TB, lbPort int, nodes []string, backendLines ...string) string {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(cfg), "bind 127.0.0.1:8090", fmt.Sprintf("bind 127.0.0.1:%d", lbPort), 1)
	for i, n := range nodes {
		s = strings.Replace(s, fmt.Sprintf("127.0.0.1:%d\n", 8091+i), strings.TrimPrefix(n, "http://")+"\n", 1)
	}
	// Fewer nodes than the file has servers: the rest go.
	for i := len(nodes); i < 3; i++ {
		s = strings.Replace(s, fmt.Sprintf("    server node%d 127.0.0.1:%d\n", i+1, 8091+i), "", 1)
	}
	for _, l := range backendLines {
		if strings.HasPrefix(l, "option httpchk ") {
			// Another health check replaces the file's.
			s = strings.Replace(s, "    option httpchk GET /readyz?local\n", "    "+l+"\n", 1)
			continue
		}
		s = strings.Replace(s, "    balance roundrobin\n", "    balance roundrobin\n    "+l+"\n", 1)
	}
	cfgFile := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	Start(t, "haproxy", "haproxy", "-db", "-f", cfgFile)
	lb := fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	WaitFor(t, 10*time.Second, "haproxy to answer", func() bool { return Status(lb+"/healthz") == 200 })
	return lb
}
