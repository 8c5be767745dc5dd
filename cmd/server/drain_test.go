package main

import (
	"bufio"
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

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// binaryProc is the built server running as a child process.
type binaryProc struct {
	cmd    *exec.Cmd
	addr   string
	log    *testenv.Buffer
	exited chan struct{} // closed when the process has exited
	exitAt time.Time     // when it was seen exiting; read after exited
	err    error         // cmd.Wait's; read after exited
}

// buildBinary builds cmd/server into a test directory, with env added
// to the go command's environment (CGO_ENABLED=0) and flags to go build.
func buildBinary(t *testing.T, env []string, flags ...string) string {
	t.Helper()
	testenv.SkipIfShort(t, "a build of the binary")
	bin := filepath.Join(t.TempDir(), "sockjsd")
	build := exec.Command("go", append(append([]string{"build"}, flags...), "-o", bin, ".")...)
	build.Env = append(os.Environ(), env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs bin on a free loopback port with args and returns once
// it logged that it listens. It is killed when the test ends.
func startBinary(t *testing.T, bin string, args ...string) *binaryProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return runBinary(t, bin, addr, nil, append([]string{"-addr", addr, "-client-dir", t.TempDir()}, args...)...)
}

// runBinary runs bin with args and, unless env is nil, that environment
// alone; addr is where it listens. It returns once the binary logged that
// it listens, and kills it when the test ends.
func runBinary(t *testing.T, bin, addr string, env []string, args ...string) *binaryProc {
	t.Helper()
	p := &binaryProc{addr: addr, log: &testenv.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = env
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("server log:\n%s", p.log.String())
		}
	})
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			_, _ = p.log.Write([]byte(sc.Text() + "\n"))
			if !seen && strings.Contains(sc.Text(), "listening") {
				seen = true
				close(listening)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait() // after the pipe is read to its end, as Wait wants
		p.exitAt = time.Now()
		close(p.exited)
	}()
	select {
	case <-listening:
	case <-p.exited:
		t.Fatalf("server exited before listening: %v\n%s", p.err, p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not report listening within 30s:\n%s", p.log.String())
	}
	return p
}

func (p *binaryProc) signal(t *testing.T, sig os.Signal) time.Time {
	t.Helper()
	at := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return at
}

// waitExit waits up to d for the process to exit cleanly.
func (p *binaryProc) waitExit(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("server did not exit within %v", d)
	}
	if p.err != nil {
		t.Fatalf("server exit: %v", p.err)
	}
	return p.exitAt
}

// httpGet is one GET with a bounded wait: status and body, or 0 and the error.
func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// waitReadyz polls /readyz (every 20ms, 10s at most) until it answers
// want.
func (p *binaryProc) waitReadyz(t *testing.T, want int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet("http://" + p.addr + "/readyz")
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answers %d %q after 10s, want %d", code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wsEcho is an open SockJS websocket session on /echo.
type wsEcho struct{ c *websocket.Conn }

func dialEcho(t *testing.T, addr, id string) *wsEcho {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial("ws://"+addr+"/echo/000/"+id+"/websocket", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
		t.Fatalf("%s open: %q %v", id, m, err)
	}
	return &wsEcho{c}
}

// echo sends msg and waits for it to come back.
func (w *wsEcho) echo(msg string) error {
	if err := w.c.WriteMessage(websocket.TextMessage, []byte(`["`+msg+`"]`)); err != nil {
		return err
	}
	_, m, err := w.c.ReadMessage()
	if err != nil {
		return err
	}
	if want := `a["` + msg + `"]`; string(m) != want {
		return &unexpected{got: string(m), want: want}
	}
	return nil
}

// closeFrame reads until the next frame that is not a heartbeat, then on
// to the websocket's end, answering the server's close frame as a
// browser does (else the server waits -ws-close-wait for the answer).
func (w *wsEcho) closeFrame() (string, error) {
	for {
		_, m, err := w.c.ReadMessage()
		if err != nil {
			return "", err
		}
		if string(m) != "h" {
			for err == nil {
				_, _, err = w.c.ReadMessage()
			}
			return string(m), nil
		}
	}
}

type unexpected struct{ got, want string }

func (u *unexpected) Error() string { return "got " + u.got + ", want " + u.want }

// pollEcho opens an xhr-polling session and echoes one message on it: a
// new session served from start to end.
func pollEcho(addr, id, msg string) error {
	c := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + addr + "/echo/000/" + id
	post := func(path, body string) (string, error) {
		res, err := c.Post(base+path, "text/plain", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	steps := []struct{ path, body, want string }{
		{"/xhr", "", "o\n"},
		{"/xhr_send", `["` + msg + `"]`, ""},
		{"/xhr", "", `a["` + msg + `"]` + "\n"},
	}
	for _, s := range steps {
		got, err := post(s.path, s.body)
		if err != nil {
			return err
		}
		if got != s.want {
			return &unexpected{got: got, want: s.want}
		}
	}
	return nil
}

var tookRe = regexp.MustCompile(`msg="shut down" took=(\S+)`)

// TestBinaryDrain runs the real binary. On SIGTERM, /readyz answers 503
// "draining" at once while open sessions and new ones are served for
// -drain-delay; then every session gets c[1001,"Going away"] and the
// process exits. A second signal cuts the delay short; -drain-delay=0
// shuts down at once. SOCKJSD_TEST_DRAIN_SESSIONS (default 100) sets how many
// websocket sessions are open when the drain starts, to measure the
// time to drain.
func TestBinaryDrain(t *testing.T) {
	bin := buildBinary(t, nil)
	sessions := 100
	if v := os.Getenv("SOCKJSD_TEST_DRAIN_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SOCKJSD_TEST_DRAIN_SESSIONS=%q: want a whole number, 1 or more", v)
		}
		sessions = n
	}
	const shutdownTimeout = 10 * time.Second
	// slack covers a loaded machine: a process start, scheduling, and
	// the 1001 frames written to every session.
	const slack = 10 * time.Second

	t.Run("delay", func(t *testing.T) {
		const delay = 3 * time.Second
		p := startBinary(t, bin, "-drain-delay", delay.String(), "-shutdown-timeout", shutdownTimeout.String(),
			"-max-connections-per-address", strconv.Itoa(sessions+100))
		if code, body := httpGet("http://" + p.addr + "/readyz"); code != 200 {
			t.Fatalf("/readyz before SIGTERM: %d %q", code, body)
		}
		conns := make([]*wsEcho, sessions)
		for i := range conns {
			conns[i] = dialEcho(t, p.addr, "drain-"+strconv.Itoa(i))
		}
		sigAt := p.signal(t, syscall.SIGTERM)
		if body := p.waitReadyz(t, http.StatusServiceUnavailable); body != "draining\n" {
			t.Errorf("/readyz while draining says %q, want \"draining\\n\"", body)
		}
		// The balancer's check (deploy/haproxy.cfg) says so too.
		if code, body := httpGet("http://" + p.addr + "/readyz?local"); code != http.StatusServiceUnavailable || body != "draining\n" {
			t.Errorf("/readyz?local while draining: %d %q, want 503 \"draining\\n\"", code, body)
		}
		// Everything is still served: the open sessions, a new session,
		// and the liveness probe.
		for i, c := range conns {
			if err := c.echo("during-drain"); err != nil {
				t.Fatalf("session %d during the drain: %v", i, err)
			}
		}
		if err := pollEcho(p.addr, "drain-new", "new-during-drain"); err != nil {
			t.Fatalf("a new xhr-polling session during the drain: %v", err)
		}
		// Every answer closes its connection, so the client's next
		// request opens one the balancer sends elsewhere.
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + p.addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != 200 || !res.Close {
			t.Errorf("/healthz during the drain: %d, Connection: close %v; want 200 and the connection closed", res.StatusCode, res.Close)
		}
		if time.Since(sigAt) >= delay {
			t.Logf("the checks during the drain took %v, longer than the %v delay: the machine is loaded", time.Since(sigAt), delay)
		}
		var wg sync.WaitGroup
		frames := make([]string, len(conns))
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				frames[i], _ = c.closeFrame()
			}()
		}
		exitAt := p.waitExit(t, delay+shutdownTimeout+slack)
		wg.Wait() // each read ends by its deadline at the latest
		for i, f := range frames {
			if f != `c[1001,"Going away"]` {
				t.Fatalf("session %d got %q at shutdown, want c[1001,\"Going away\"]", i, f)
			}
		}
		took := exitAt.Sub(sigAt)
		if took < delay {
			t.Errorf("exited %v after SIGTERM, before the %v drain delay", took, delay)
		}
		log := p.log.String()
		for _, want := range []string{`msg="draining: /readyz answers 503, still serving" drain_delay=3s`, `msg="drain done"`, "cut_short_by_signal=false"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q", want)
			}
		}
		shut := "?"
		if m := tookRe.FindStringSubmatch(log); m != nil {
			shut = m[1]
		}
		t.Logf("%d websocket sessions: exited %v after SIGTERM (drain delay %v, shutdown %s)", sessions, took.Round(time.Millisecond), delay, shut)
	})

	t.Run("second signal cuts the delay", func(t *testing.T) {
		const delay = 5 * time.Minute
		p := startBinary(t, bin, "-drain-delay", delay.String(), "-shutdown-timeout", shutdownTimeout.String())
		c := dialEcho(t, p.addr, "second-signal")
		p.signal(t, syscall.SIGTERM)
		p.waitReadyz(t, http.StatusServiceUnavailable)
		if err := c.echo("still-served"); err != nil {
			t.Fatalf("session during the drain: %v", err)
		}
		secondAt := p.signal(t, syscall.SIGINT)
		if f, _ := c.closeFrame(); f != `c[1001,"Going away"]` {
			t.Errorf("close frame %q, want c[1001,\"Going away\"]", f)
		}
		exitAt := p.waitExit(t, shutdownTimeout+slack)
		if !strings.Contains(p.log.String(), "cut_short_by_signal=true") {
			t.Error(`log lacks "cut_short_by_signal=true"`)
		}
		t.Logf("exited %v after the second signal", exitAt.Sub(secondAt).Round(time.Millisecond))
	})

	t.Run("zero delay shuts down at once", func(t *testing.T) {
		p := startBinary(t, bin, "-drain-delay=0", "-shutdown-timeout", shutdownTimeout.String())
		c := dialEcho(t, p.addr, "zero")
		sigAt := p.signal(t, syscall.SIGTERM)
		if f, _ := c.closeFrame(); f != `c[1001,"Going away"]` {
			t.Errorf("close frame %q, want c[1001,\"Going away\"]", f)
		}
		exitAt := p.waitExit(t, shutdownTimeout+slack)
		if strings.Contains(p.log.String(), "draining") {
			t.Errorf("-drain-delay=0 logged a drain:\n%s", p.log.String())
		}
		t.Logf("exited %v after SIGTERM", exitAt.Sub(sigAt).Round(time.Millisecond))
	})
}

// TestBinaryHangup: SIGHUP to a server without -tls-cert (nothing to
// reload) is logged and the server serves on, its sessions too; SIGHUP's
// default action would end it.
func TestBinaryHangup(t *testing.T) {
	bin := buildBinary(t, nil)
	p := startBinary(t, bin)
	c := dialEcho(t, p.addr, "hangup")
	p.signal(t, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "SIGHUP") {
		select {
		case <-p.exited:
			t.Fatalf("the server exited on SIGHUP: %v", p.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no log line for SIGHUP within 10s")
		}
	}
	if err := c.echo("after-hangup"); err != nil {
		t.Fatalf("the session after SIGHUP: %v", err)
	}
}
