//go:build linux

package bridge_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/bridge"
	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// TestLongLine: a 10 MB line closes the session with 3010, not the server,
// and the program is gone.
func TestLongLine(t *testing.T) {
	s := startServer(t, bridge.Options{Argv: probeable("head -c 10485760 /dev/zero | tr '\\0' x; echo; sleep 100")}, transport.Options{})
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
		c := dial(t, s.URL, tr)
		code, reason, msgs := waitClosed(t, c)
		if len(msgs) == 0 {
			t.Fatalf("%s: closed %d %q before the pid came", tr, code, reason)
		}
		pid, _ := strconv.Atoi(msgs[0])
		msgs = msgs[1:]
		if code != bridge.CodeLineTooLong || reason != bridge.ReasonLineTooLong || len(msgs) != 0 {
			t.Errorf("%s: close %d %q after %d messages, want %d %q", tr, code, reason, len(msgs), bridge.CodeLineTooLong, bridge.ReasonLineTooLong)
		}
		waitGroupGone(t, pid, 10*time.Second)
	}
	// The server is unaffected.
	probe(t, s)
}

// probeable makes a script run cat instead when the session's URL has
// ?probe=1, for probe.
func probeable(script string) []string {
	return sh(`echo $$; case "$QUERY_STRING" in probe=1) exec cat;; esac; ` + script)
}

// probe checks that a new session of s works.
func probe(t *testing.T, s *server) {
	t.Helper()
	c, ht := dialWith(t, s.URL+"?probe=1", sockjs.WebSocket)
	defer ht.CloseIdleConnections()
	defer c.Close()
	_ = recv(t, c) // the pid
	_ = c.Send("probe")
	if got := recv(t, c); got != "probe" {
		t.Fatalf("probe: got %q", got)
	}
}

// TestNeverReadsStdin: a program that never reads keeps its session
// open while the client's messages wait (nothing is dropped, the client
// is slowed down); closing the client ends it.
func TestNeverReadsStdin(t *testing.T) {
	// A websocket whose reader waits for the program to take messages
	// does not read the connection, so the server notices the client
	// left only when a heartbeat write fails: heartbeats every 100ms.
	s := startServer(t, bridge.Options{Argv: probeable("exec sleep 1000")}, transport.Options{Session: session.Options{HeartbeatDelay: 100 * time.Millisecond}})
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
		c := dial(t, s.URL, tr)
		pid := pidOf(t, c)
		big := strings.Repeat("x", 1024)
		for i := 0; i < 500; i++ { // 500 KiB: more than the pipe and the receive queue hold
			if err := c.Send(big); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		if m, err := c.Recv(ctx); err != context.DeadlineExceeded {
			code, reason, _ := c.CloseInfo()
			t.Fatalf("%s: got %q, %v (close %d %q), want the session to stay open and silent", tr, m, err, code, reason)
		}
		cancel()
		_ = c.Close()
		waitGroupGone(t, pid, 10*time.Second)
	}
	probe(t, s)
}

// TestIgnoresSIGTERM: a program (and its children) ignoring SIGTERM gets
// SIGKILL after the grace period; not before.
func TestIgnoresSIGTERM(t *testing.T) {
	const grace = 700 * time.Millisecond
	s := startServer(t, bridge.Options{KillGrace: grace, Argv: sh("trap '' TERM; echo $$; sleep 1000 & while :; do sleep 1; done")}, transport.Options{})
	c := dial(t, s.URL, sockjs.WebSocket)
	pid := pidOf(t, c)
	start := time.Now()
	_ = c.Close()
	took := waitGroupGone(t, pid, grace+10*time.Second)
	if took < grace-50*time.Millisecond {
		t.Errorf("group gone %v after close, before the grace period %v", took, grace)
	}
	if s.obs.killed.Load() != 1 {
		t.Errorf("killed = %d, want 1", s.obs.killed.Load())
	}
	waitFor(t, 5*time.Second, "the exit to be counted", func() bool { return s.obs.exited[bridge.ExitSignal].Load() == 1 })
	t.Logf("group of a TERM-ignoring program gone %v after the client closed (grace %v)", time.Since(start).Round(time.Millisecond), grace)
}

// TestOrphans: children a program leaves behind, even ones that outlive
// it, are killed and reaped with it: no process and no zombie of its group
// is left, whether the session or the program ended first.
func TestOrphans(t *testing.T) {
	s := startServer(t, bridge.Options{Argv: sh(`echo $$; (sleep 1000 >/dev/null 2>&1 &); sleep 1000 & read x; echo bye`)}, transport.Options{})
	// The session ends first.
	c := dial(t, s.URL, sockjs.WebSocket)
	pid := pidOf(t, c)
	waitFor(t, 5*time.Second, "the children to start", func() bool { return len(groupProcs(pid)) >= 3 })
	_ = c.Close()
	waitGroupGone(t, pid, 10*time.Second)
	// The program exits first, leaving its children.
	c = dial(t, s.URL, sockjs.XHRPolling)
	pid = pidOf(t, c)
	waitFor(t, 5*time.Second, "the children to start", func() bool { return len(groupProcs(pid)) >= 3 })
	_ = c.Send("go")
	code, reason, msgs := waitClosed(t, c)
	if code != bridge.CodeExited || len(msgs) != 1 || msgs[0] != "bye" {
		t.Errorf("close %d %q after %q, want 3000 after bye", code, reason, msgs)
	}
	waitGroupGone(t, pid, 10*time.Second)
}

// TestMaxProcs: past the limit, new sessions close with 3013 and the
// running ones are unaffected; a freed slot is reused.
func TestMaxProcs(t *testing.T) {
	s := startServer(t, bridge.Options{Argv: sh("echo $$; exec cat"), Procs: bridge.NewLimit(2)}, transport.Options{})
	a, b := dial(t, s.URL, sockjs.WebSocket), dial(t, s.URL, sockjs.XHRPolling)
	pidOf(t, a)
	pidOf(t, b)
	c := dial(t, s.URL, sockjs.WebSocket)
	if code, reason, _ := waitClosed(t, c); code != bridge.CodeTooManyProcs || reason != bridge.ReasonTooManyProcs {
		t.Errorf("third session: close %d %q, want %d %q", code, reason, bridge.CodeTooManyProcs, bridge.ReasonTooManyProcs)
	}
	if n := s.obs.refused[bridge.RefusedMaxProcs].Load(); n != 1 {
		t.Errorf("refused = %d, want 1", n)
	}
	_ = a.Send("still here")
	if got := recv(t, a); got != "still here" {
		t.Fatalf("got %q", got)
	}
	_ = a.Close()
	waitFor(t, 10*time.Second, "a slot to be freed", func() bool { return s.b.Running() == 1 })
	probe(t, s)
}

// TestBackpressure: a program writing as fast as it can to a client that
// does not read is held back: the session stays open (no 3009), the
// server's queue stays within the bounds, and every line arrives in
// order once the client reads.
func TestBackpressure(t *testing.T) {
	const window = 64
	s := startServer(t, bridge.Options{Argv: sh(`i=0; while :; do echo $i; i=$((i+1)); done`), MaxQueuedMessages: window},
		transport.Options{Session: session.Options{SendQueueMessages: 1000, DisconnectDelay: 10 * time.Second}})
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			// The previous subtest's session is gone only once its
			// program's processes are (liveSession wants one).
			waitFor(t, 10*time.Second, "the previous session to be gone", func() bool {
				n := 0
				s.h.Range(func(*session.Session) { n++ })
				return n == 0
			})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := sockjs.Dial(ctx, s.URL, sockjs.Options{Transports: []string{tr}, RecvQueue: 16})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Not reading: the client's queue, the sockets, the session
			// queue and the pipe fill up; then the program must wait.
			sess := liveSession(t, s.h)
			maxSeen := 0
			for end := time.Now().Add(time.Second); time.Now().Before(end); {
				n, _ := sess.Buffered()
				maxSeen = max(maxSeen, n)
				if code, reason, closed := sess.CloseInfo(); closed {
					t.Fatalf("session closed while the client was not reading: %d %q", code, reason)
				}
				time.Sleep(5 * time.Millisecond) // sampling the queue for a second
			}
			if maxSeen > window {
				t.Errorf("send queue reached %d messages, bound %d", maxSeen, window)
			}
			for i := 0; i < 20000; i++ {
				m, err := c.Recv(ctx)
				if err != nil {
					code, reason, _ := c.CloseInfo()
					t.Fatalf("message %d: %v (close %d %q)", i, err, code, reason)
				}
				if m != strconv.Itoa(i) {
					t.Fatalf("message %d is %q", i, m)
				}
			}
			t.Logf("%s: send queue peaked at %d messages while the client did not read", tr, maxSeen)
		})
	}
}

// TestShutdown: Shutdown terminates every program, kills the ones that
// ignore SIGTERM when its context ends, and refuses new sessions.
func TestShutdown(t *testing.T) {
	s := startServer(t, bridge.Options{KillGrace: time.Minute, Argv: sh("trap '' TERM; echo $$; exec sleep 1000")}, transport.Options{})
	var pids []int
	for i := 0; i < 3; i++ {
		pids = append(pids, pidOf(t, dial(t, s.URL, transports[i])))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.b.Shutdown(ctx)
	if err == nil {
		t.Error("Shutdown: no error although the programs had to be killed")
	}
	if s.b.Running() != 0 {
		t.Fatalf("%d programs running after Shutdown", s.b.Running())
	}
	for _, pid := range pids {
		waitGroupGone(t, pid, time.Second) // reaped already: at most the time /proc takes
	}
	t.Logf("Shutdown with a 500ms deadline took %v: %v", time.Since(start).Round(time.Millisecond), err)
	c := dial(t, s.URL, sockjs.WebSocket)
	if code, _, _ := waitClosed(t, c); code != session.CodeGoingAway {
		t.Errorf("session after Shutdown: close %d, want %d", code, session.CodeGoingAway)
	}
}
