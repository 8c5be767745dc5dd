// Package adversarial is the bad-input corpus: each test starts the real
// server binary (cmd/server, built once per run) in its own process, sends
// one kind of attack or broken input, and asserts four things: the status
// or close code the attack gets, bounded memory growth of the server
// process (peak RSS from /proc, with margin), no panic or fatal error on
// the server's stderr, and that a probe session opened beforehand (the Go
// client of package client over websocket against /echo) still echoes.
//
// The harness, for cases added in other files of this package (hub cases
// go in hub_test.go):
//
//	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_MAX_SESSIONS": "2000"}})
//	p := srv.Probe(t)              // connected before the attack
//	base := srv.RSS(t)             // bytes resident now
//	... the attack, with srv.Do, srv.Raw, srv.WS, srv.URL ...
//	srv.AssertGrowth(t, base, 40<<20) // peak RSS (VmHWM) - base <= 40 MiB
//	p.Check(t)                     // the probe still echoes
//	srv.Metric(t, "sockjs_limit_hits_total", "limit", "body-size") // a counter's value
//
// Cases call t.Parallel(): each has its own server process, so the RSS
// figures stay apart, and go test runs GOMAXPROCS of them at a time.
//
// Start registers a cleanup that stops the server and fails the test if
// its stderr shows a panic, a fatal error or a data race. Settings go
// through SOCKJSD_* environment variables rather than flags, so that the
// same cases can run against an older binary that lacks a flag:
// SOCKJSD_ADVERSARIAL_BIN=/path/to/server go test -v ./e2e/adversarial
// reports the figures of that binary (its RSS growth is logged before
// the bound is checked). Every case skips under -short.
package adversarial

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// serverBinary builds cmd/server once per test run (without -race: the
// race detector multiplies memory, and RSS is what is measured), or
// returns $SOCKJSD_ADVERSARIAL_BIN.
func serverBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("SOCKJSD_ADVERSARIAL_BIN"); b != "" {
		return b
	}
	root := testenv.RepoRoot(t)
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go toolchain not found: %w", err)
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "sockjsd-adversarial-"); buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "server")
		cmd := exec.Command(goBin, "build", "-o", binary, "./cmd/server")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Config tunes one server process.
type Config struct {
	// Env adds SOCKJSD_* settings (every flag has one).
	Env map[string]string
	// NoFile, when > 0, runs the server with that limit on open files
	// (through prlimit).
	NoFile int
	// TLS, when set, is the client side of a server run with -tls-cert
	// (in Env): URL is https:// and Do speaks TLS with it.
	TLS *tls.Config
}

// Server is one running server process.
type Server struct {
	Addr string // host:port
	URL  string // http://host:port
	Pid  int

	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan struct{}
	client *http.Client
}

var listenRE = regexp.MustCompile(`msg="sockjs server listening" addr=(\S+)`)

// Start runs the server on a free loopback port and waits until it
// answers /healthz.
func Start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("adversarial corpus: starts server processes and floods them; skipped under -short")
	}
	bin := serverBinary(t)
	// No drain on SIGTERM: no balancer watches these servers, and each
	// test's stop would wait the default delay for nothing.
	args := []string{bin, "-addr", "127.0.0.1:0", "-client-dir", t.TempDir(), "-log-level", "info", "-drain-delay", "0"}
	if cfg.NoFile > 0 {
		pl, err := exec.LookPath("prlimit")
		if err != nil {
			t.Skip("prlimit (util-linux) not found: needed to limit the server's open files")
		}
		args = append([]string{pl, fmt.Sprintf("--nofile=%d:%d", cfg.NoFile, cfg.NoFile)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = os.Environ()
	for k, v := range cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &Server{cmd: cmd, stderr: &testenv.Buffer{}, done: make(chan struct{}), client: httpClient}
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
		s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.TLS, ForceAttemptHTTP2: true, DisableCompression: true}}
	}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Pid = cmd.Process.Pid
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.stderr, line)
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(s.stderr, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })
	select {
	case a := <-addr:
		s.Addr, s.URL = a, scheme+a
	case <-s.done:
		t.Fatalf("server exited at start:\n%s", s.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not say where it listens within 30s:\n%s", s.stderr.String())
	}
	// The listening line comes after listen(2): connections queue from
	// then on, so one request is enough.
	if r, err := s.Do("GET", "/healthz", nil); err != nil || r.Code != 200 {
		t.Fatalf("server not healthy: %d %v", r.Code, err)
	}
	return s
}

var crashRE = regexp.MustCompile(`(?m)^(panic: |fatal error: |WARNING: DATA RACE)|level=ERROR msg="sockjs: session handler panicked"`)

func (s *Server) stop(t *testing.T) {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("server did not stop within 20s of SIGTERM")
	}
	if out := s.stderr.String(); crashRE.MatchString(out) {
		t.Errorf("server stderr shows a crash:\n%s", tail(out, 4000))
	}
}

// Stderr is what the server logged so far.
func (s *Server) Stderr() string { return s.stderr.String() }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// procStatus reads one "Key: N kB" field of /proc/<pid>/status, in bytes.
func (s *Server) procStatus(t *testing.T, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid))
	if err != nil {
		t.Fatalf("read /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("parse %s: %v", line, err)
			}
			return n << 10
		}
	}
	t.Fatalf("%s not in /proc/%d/status", key, s.Pid)
	return 0
}

// RSS is the server's resident memory now, in bytes.
func (s *Server) RSS(t *testing.T) int64 { return s.procStatus(t, "VmRSS") }

// PeakRSS is the highest resident memory the server process has had.
func (s *Server) PeakRSS(t *testing.T) int64 { return s.procStatus(t, "VmHWM") }

// AssertGrowth fails the test if the server's peak RSS rose more than
// bound bytes above base. The growth is logged first, so that a run
// against another binary still reports it.
func (s *Server) AssertGrowth(t *testing.T, base, bound int64) {
	t.Helper()
	growth := s.PeakRSS(t) - base
	t.Logf("RSS: base %d MiB, peak growth %d MiB (bound %d MiB)", base>>20, growth>>20, bound>>20)
	if growth > bound {
		t.Errorf("peak RSS grew by %d MiB, bound %d MiB", growth>>20, bound>>20)
	}
}

// Resp is an HTTP answer.
type Resp struct {
	Code   int
	Header http.Header
	Body   string
}

// Do sends one request (hdr: name, value, ...) on a fresh connection and
// returns the answer; err is a transport error (the server cut the
// connection, say).
func (s *Server) Do(method, path string, body io.Reader, hdr ...string) (Resp, error) {
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		return Resp{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := s.client.Do(req.WithContext(ctx))
	if err != nil {
		return Resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return Resp{res.StatusCode, res.Header, string(b)}, err
}

// MustDo is Do that fails the test on a transport error.
func (s *Server) MustDo(t *testing.T, method, path, body string, hdr ...string) Resp {
	t.Helper()
	r, err := s.Do(method, path, strings.NewReader(body), hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 0, DisableCompression: true}}

// Raw opens a plain TCP connection to the server (closed at cleanup),
// with a 30s deadline on every operation.
func (s *Server) Raw(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// WS opens a websocket to path (hdr: extra request headers); closed at
// cleanup. res is the handshake answer when it was refused.
func (s *Server) WS(t *testing.T, path string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, res, err := d.Dial("ws://"+s.Addr+path, hdr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		// The server pings right after the open frame (its round-trip
		// metric). gorilla's default handler ends the read with an error
		// when its pong cannot be written, as when the server already
		// closed after its close frame: the test would then miss that
		// close frame, still in the socket's buffer. Answer as browsers
		// do, and never let the answer decide the read.
		c.SetPingHandler(func(data string) error {
			_ = c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			return nil
		})
	}
	return c, res, err
}

// Metric is the value of a counter or gauge on /metrics with the given
// label pairs (name, value, ...), 0 if absent.
func (s *Server) Metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	r := s.MustDo(t, "GET", "/metrics", "")
	return parseMetric(t, r.Body, name, labels...)
}

// parseMetric is the value of the metric in a /metrics body (see Metric).
func parseMetric(t *testing.T, body, name string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(rest, labels[i]+`="`+labels[i+1]+`"`) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	return 0
}

// Probe is a session opened before an attack that must keep working.
type Probe struct {
	conn *client.Conn
	n    int
}

// Probe connects the Go client over websocket to /echo.
func (s *Server) Probe(t *testing.T) *Probe {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.URL+"/echo", client.Options{Transports: []string{client.WebSocket}})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	p := &Probe{conn: c}
	p.Check(t)
	return p
}

// Check sends a fresh message and expects it back within 20s.
func (p *Probe) Check(t *testing.T) {
	t.Helper()
	p.n++
	msg := fmt.Sprintf("probe %d", p.n)
	if err := p.conn.Send(msg); err != nil {
		t.Fatalf("probe send: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := p.conn.Recv(ctx)
	if err != nil || got != msg {
		code, reason, _ := p.conn.CloseInfo()
		t.Fatalf("probe: got %q, %v (close %d %q), want %q", got, err, code, reason, msg)
	}
}

// parallel runs fn(i) for i in [0, n) on at most workers goroutines and
// waits for all of them.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}
