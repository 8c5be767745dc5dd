// Package cluster tests cluster mode with real processes: redis-server,
// three sockjsd nodes built from cmd/server, and haproxy balancing round
// robin without stickiness (deploy/haproxy.cfg), driven by the real
// sockjs-client under node and in Chromium; and the gateway (-proxy) in
// front of the proxy example's Python backend (gateway_test.go).
package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// secret is the cluster secret of the test nodes; it must appear in no log
// line and no metric.
const secret = "cluster-secret-5f3a9c"

func TestMain(m *testing.M) {
	code := m.Run()
	procs.Cleanup()
	os.Exit(code)
}

// need skips the test under -short or when a program is missing.
func need(t *testing.T, programs ...string) {
	t.Helper()
	testenv.SkipIfShort(t, "redis-server, haproxy and three nodes")
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Missing(t, p+" on PATH (the cluster tests need it)")
		}
	}
}

// serverBinary builds cmd/server once per test binary.
func serverBinary(t *testing.T) string { return procs.Server(t) }

func freePort(t *testing.T) int { return procs.FreePort(t) }

// proc is a child process, killed when the test ends.
type proc = procs.Proc

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return procs.Start(t, name, args...)
}

func tail(s string, n int) string { return procs.Tail(s, n) }

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	procs.WaitFor(t, d, what, cond)
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// status GETs url and returns its status (0 when it cannot connect).
func status(url string) int { return procs.Status(url) }

// redisServer is testenv's redis-server (no persistence, a fixed port, so
// it can be stopped and started again where the nodes expect it) with a
// raw command for reading what the nodes wrote.
type redisServer struct{ *testenv.Redis }

func startRedis(t *testing.T) *redisServer { return &redisServer{testenv.StartRedis(t)} }

// do sends one command on a connection of its own and returns the first
// line of the answer ("" when redis-server cannot be reached).
func (r *redisServer) do(args ...string) string {
	c, err := r.dial()
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.do(args...)
}

// redisConn is one connection to redis-server, for commands that must
// not need a new one (while new connections are refused).
type redisConn struct {
	net.Conn
	br *bufio.Reader
}

func (r *redisServer) dial() (*redisConn, error) {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return nil, err
	}
	return &redisConn{c, bufio.NewReader(c)}, nil
}

// do sends one command and returns the first line of the answer ("" when
// the connection failed).
func (c *redisConn) do(args ...string) string {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return ""
	}
	line, _ := c.br.ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "$") && line != "$-1" {
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return line
		}
		v := make([]byte, n+2)
		_, _ = io.ReadFull(c.br, v)
		first, _, _ := strings.Cut(string(v[:n]), "\n")
		return strings.TrimRight(first, "\r")
	}
	return line
}

// node is one sockjsd process.
type node struct {
	name string
	url  string
	p    *proc
}

type clusterEnv struct {
	t     *testing.T
	redis *redisServer
	nodes []*node
	lb    string // the balancer's base URL
	args  []string
}

// lbPlaceholder in an extra argument of startCluster stands for the
// balancer's base URL (for flags such as -allowed-origins).
const lbPlaceholder = "{lb}"

// startCluster runs redis-server, three nodes and haproxy with
// deploy/haproxy.cfg (its ports replaced by free ones).
func startCluster(t *testing.T, extra ...string) *clusterEnv {
	t.Helper()
	need(t, "redis-server", "haproxy")
	serverBinary(t) // build before the clock of any wait starts
	root := testenv.RepoRoot(t)
	env := &clusterEnv{t: t, redis: startRedis(t)}
	lbPort := freePort(t)
	extra = slices.Clone(extra)
	for i := range extra {
		extra[i] = strings.ReplaceAll(extra[i], lbPlaceholder, fmt.Sprintf("http://127.0.0.1:%d", lbPort))
	}
	env.args = append([]string{
		"-redis", env.redis.URL, "-cluster-secret", secret, "-client-dir", filepath.Join(root, "web", "sockjs-client"),
		// Short enough that the tests see keys restored and released
		// within seconds; long enough for a loaded machine.
		"-cluster-owner-ttl", "3s",
		// Streaming responses end after 4 KiB, so xhr-streaming and
		// eventsource reconnect often and land on every node.
		"-response-limit", "4096",
	}, extra...)
	for i := range 3 {
		n := &node{name: fmt.Sprintf("node%d", i+1), url: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
		env.nodes = append(env.nodes, n)
		env.startNode(n)
	}
	env.lb = env.startHAProxyOn(env.nodes, lbPort)
	return env
}

// startHAProxy runs deploy/haproxy.cfg with a free port for the frontend
// and nodes as its three servers, and returns its base URL.
func (e *clusterEnv) startHAProxy(nodes []*node) string {
	e.t.Helper()
	return e.startHAProxyOn(nodes, freePort(e.t))
}

// startHAProxyOn is startHAProxy with the frontend on lbPort.
func (e *clusterEnv) startHAProxyOn(nodes []*node, lbPort int, backendLines ...string) string {
	e.t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	// Every response names the node it came from (see lbServerHeader).
	return procs.HAProxyOn(e.t, lbPort, urls, append([]string{"http-response set-header " + lbServerHeader + " %[srv_name]"}, backendLines...)...)
}

// startNginx runs deploy/nginx.conf as startHAProxy runs haproxy.cfg: a
// free port for the server, nodes as the upstream's three servers, the pid
// file and temporary files in a directory of the test's, in the
// foreground. Returns its base URL.
func (e *clusterEnv) startNginx(nodes []*node) string {
	t := e.t
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Workers drop root for nobody; they must reach the temporary paths.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	replace := func(old, new string) { // the test must notice when the file changes
		if !strings.Contains(s, old) {
			t.Fatalf("deploy/nginx.conf has no %q", old)
		}
		s = strings.Replace(s, old, new, 1)
	}
	lbPort := freePort(t)
	replace("listen 127.0.0.1:8090;", fmt.Sprintf("listen 127.0.0.1:%d;", lbPort))
	for i, n := range nodes {
		replace(fmt.Sprintf("server 127.0.0.1:%d ", 8091+i), "server "+strings.TrimPrefix(n.url, "http://")+" ")
	}
	replace("pid /tmp/sockjsd-nginx.pid;", "pid "+filepath.Join(dir, "nginx.pid")+";")
	var temps strings.Builder
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", p, filepath.Join(dir, p))
	}
	// Every response names the node it came from (see lbServerHeader).
	temps.WriteString("    add_header " + lbServerHeader + " $upstream_addr always;\n")
	replace("http {\n", "http {\n"+temps.String())
	cfgFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfgFile, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	startProc(t, "nginx", "nginx", "-p", dir, "-c", cfgFile, "-g", "daemon off; error_log stderr;")
	lb := fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	waitFor(t, 10*time.Second, "nginx to answer", func() bool { return status(lb+"/healthz") == 200 })
	return lb
}

func (e *clusterEnv) startNode(n *node) {
	e.t.Helper()
	args := append([]string{serverBinary(e.t), "-addr", strings.TrimPrefix(n.url, "http://")}, e.args...)
	n.p = startProc(e.t, n.name, args...)
	waitFor(e.t, 20*time.Second, n.name+" to be ready", func() bool { return status(n.url+"/readyz") == 200 })
}

// metric sums the samples of name whose labels contain every one of
// labels (`endpoint="xhr"`) on n's /metrics.
func (n *node) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, err := procs.Metric(n.get(t, "/metrics"), name, labels...)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	return v
}

func (n *node) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := httpClient.Get(n.url + path)
	if err != nil {
		t.Fatalf("%s%s: %v", n.name, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rawPost is one protocol request without a client library.
func rawPost(t *testing.T, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
