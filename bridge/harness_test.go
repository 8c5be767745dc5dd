//go:build linux

package bridge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/bridge"
	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// counts is a bridge.Observer that counts events.
type counts struct {
	started, killed atomic.Int64
	exited          [bridge.NumExitClasses]atomic.Int64
	refused         [bridge.NumRefusals]atomic.Int64
	mu              sync.Mutex
	latencies       []time.Duration
}

func (c *counts) ProcessStarted(_ string, d time.Duration) {
	c.started.Add(1)
	c.mu.Lock()
	c.latencies = append(c.latencies, d)
	c.mu.Unlock()
}
func (c *counts) ProcessExited(_ string, cl bridge.ExitClass, _ time.Duration) { c.exited[cl].Add(1) }
func (c *counts) ProcessKilled(string)                                         { c.killed.Add(1) }
func (c *counts) ProcessRefused(_ string, r bridge.Refusal)                    { c.refused[r].Add(1) }

func (c *counts) exitedTotal() int64 {
	var n int64
	for i := range c.exited {
		n += c.exited[i].Load()
	}
	return n
}

// server is a bridge mounted at /exec on a loopback HTTP server.
type server struct {
	URL string // the service's URL
	b   *bridge.Bridge
	h   *transport.Handler
	obs *counts
}

// sh is the argv running script under /bin/sh.
func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t testing.TB, o bridge.Options, to transport.Options) *server {
	t.Helper()
	obs := &counts{}
	o.Name = "/exec"
	o.Observer = obs
	if o.Logger == nil {
		o.Logger = quiet()
	}
	if o.KillGrace == 0 {
		o.KillGrace = 2 * time.Second
	}
	b, err := bridge.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if to.Logger == nil {
		to.Logger = quiet()
	}
	h := transport.New("/exec", to, b.Serve)
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, h)
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("bridge shutdown: %v", err)
		}
		srv.CloseClientConnections()
		srv.Close()
	})
	return &server{URL: srv.URL + "/exec", b: b, h: h, obs: obs}
}

func dial(t testing.TB, url, tr string) *sockjs.Conn {
	t.Helper()
	c, ht := dialWith(t, url, tr)
	t.Cleanup(func() {
		_ = c.Close()
		ht.CloseIdleConnections()
	})
	return c
}

// dialWith dials over its own HTTP transport, which the caller closes.
func dialWith(t testing.TB, url, tr string) (*sockjs.Conn, *http.Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ht := &http.Transport{}
	c, err := sockjs.Dial(ctx, url, sockjs.Options{Transports: []string{tr}, HTTPClient: &http.Client{Transport: ht}})
	if err != nil {
		t.Fatalf("dial %s over %s: %v", url, tr, err)
	}
	return c, ht
}

func recv(t testing.TB, c *sockjs.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := c.Recv(ctx)
	if err != nil {
		code, reason, _ := c.CloseInfo()
		t.Fatalf("recv: %v (close %d %q)", err, code, reason)
	}
	return m
}

// waitClosed waits for the connection to close and returns the code and
// reason; messages still queued are returned too.
func waitClosed(t testing.TB, c *sockjs.Conn) (code int, reason string, msgs []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("connection still open after 20s; got %d messages", len(msgs))
			}
			code, reason, _ = c.CloseInfo()
			return code, reason, msgs
		}
		msgs = append(msgs, m)
	}
}

// proc is a process as /proc shows it.
type proc struct {
	pid, ppid, pgid int
	state           string
}

// groupProcs lists the processes of process group pgid, zombies included.
func groupProcs(pgid int) []proc {
	return groupsProcs(map[int]bool{pgid: true})
}

// groupsProcs lists the processes of the process groups in pgids.
func groupsProcs(pgids map[int]bool) []proc {
	var out []proc
	for _, p := range allProcs() {
		if pgids[p.pgid] {
			out = append(out, p)
		}
	}
	return out
}

// allProcs lists every process, zombies included.
func allProcs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pg, _ := strconv.Atoi(f[2])
		out = append(out, proc{pid: pid, ppid: ppid, pgid: pg, state: f[0]})
	}
	return out
}

// waitGroupGone waits up to d for process group pgid to have no process
// left, zombies included, and returns how long that took.
func waitGroupGone(t testing.TB, pgid int, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ps := groupProcs(pgid)
		if len(ps) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("process group %d still has %d processes after %v: %+v", pgid, len(ps), d, ps)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc, bounded by d
	}
}

// waitGroupsGone waits up to d for every group in pgids to be empty.
func waitGroupsGone(t testing.TB, pgids []int, d time.Duration) time.Duration {
	t.Helper()
	set := map[int]bool{}
	for _, p := range pgids {
		set[p] = true
	}
	start := time.Now()
	for {
		ps := groupsProcs(set)
		if len(ps) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%d processes of the groups still there after %v, e.g. %+v", len(ps), d, ps[0])
		}
		time.Sleep(10 * time.Millisecond) // polling /proc, bounded by d
	}
}

// waitFor polls cond up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by d
	}
}

// pidOf reads the first message, the program's pid (scripts start with
// `echo $$`).
func pidOf(t testing.TB, c *sockjs.Conn) int {
	t.Helper()
	m := recv(t, c)
	pid, err := strconv.Atoi(m)
	if err != nil {
		t.Fatalf("first message %q is not a pid", m)
	}
	return pid
}

// liveSession returns the only session of the handler.
func liveSession(t testing.TB, h *transport.Handler) *session.Session {
	t.Helper()
	var ss []*session.Session
	h.Range(func(s *session.Session) { ss = append(ss, s) })
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1", len(ss))
	}
	return ss[0]
}

var transports = []string{sockjs.WebSocket, sockjs.XHRStreaming, sockjs.XHRPolling}

func msg(i int) string { return fmt.Sprintf("message %d: żółć ✓ \"q\" \\ <b>", i) }
