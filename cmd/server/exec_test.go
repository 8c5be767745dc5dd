package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestSplitExec(t *testing.T) {
	cases := []struct{ in, prefix, cmd string }{
		{"cat", "/exec", "cat"},
		{"/usr/bin/cat -u", "/exec", "/usr/bin/cat -u"},
		{"/usr/bin/env A=b prog", "/exec", "/usr/bin/env A=b prog"},
		{"/chat=./chat.sh --room a=b", "/chat", "./chat.sh --room a=b"},
		{"/tail=/usr/bin/tail -F x.log", "/tail", "/usr/bin/tail -F x.log"},
	}
	for _, tc := range cases {
		if p, c := splitExec(tc.in, "/exec"); p != tc.prefix || c != tc.cmd {
			t.Errorf("splitExec(%q) = %q, %q; want %q, %q", tc.in, p, c, tc.prefix, tc.cmd)
		}
	}
}

func TestExecConfig(t *testing.T) {
	t.Setenv("SOCKJSD_EXEC", "/a=cat\n/b=cat")
	t.Setenv("SOCKJSD_EXEC_ENV", "A=1\nB=2")
	c, err := parseConfig([]string{"-exec", "/c=cat", "-exec-kill-grace", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Exec.Commands, "|"); got != "/a=cat|/b=cat|/c=cat" {
		t.Errorf("commands %q: environment and flags add up", got)
	}
	if got := strings.Join(c.Exec.Env, "|"); got != "A=1|B=2" || c.Exec.KillGrace != 2*time.Second || c.Exec.MaxProcs != 100 || c.Exec.MaxPerAddress != 10 {
		t.Errorf("env %q grace %v max procs %d max per address %d", got, c.Exec.KillGrace, c.Exec.MaxProcs, c.Exec.MaxPerAddress)
	}
	t.Setenv("SOCKJSD_EXEC", "")
	t.Setenv("SOCKJSD_EXEC_ENV", "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, args := range [][]string{
		{"-exec", "no-such-program-xyz"},
		{"-exec", "cat 'unterminated"},
		{"-exec", "/a=cat", "-exec", "/a=cat"},
		{"-exec", "cat", "-exec-max-queued-bytes", "4194304"},
	} {
		cfg, err := parseConfig(append([]string{"-client-dir", t.TempDir()}, args...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newServer(cfg, log); err == nil {
			t.Errorf("newServer(%q): no error", args)
		}
	}
}

// TestExecServer: cmd/server with -exec serves the program over SockJS,
// counts it in /metrics, and shutdown closes the session with 1001 and
// reaps the program.
func TestExecServer(t *testing.T) {
	srv, addr := startServer(t, "-exec", `sh -c 'echo "hi $SOCKJS_TRANSPORT"; exec cat'`, "-exec", "/cat=cat")

	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := dialer.Dial("ws://"+addr+"/exec/000/a/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	read := func(want string) {
		t.Helper()
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != want {
			t.Fatalf("got %q %v, want %q", m, err, want)
		}
	}
	read("o")
	read(`a["hi websocket"]`)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`["x"]`)); err != nil {
		t.Fatal(err)
	}
	read(`a["x"]`)

	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`sockjs_exec_processes_started_total{service="/exec"} 1`, `sockjs_exec_processes_running{service="/exec"} 1`, "sockjs_exec_start_seconds_bucket"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.shutdown(ctx) }()
	read(`c[1001,"Going away"]`)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, b := range srv.exec.bridges {
		if n := b.Running(); n != 0 {
			t.Errorf("%d programs running after shutdown", n)
		}
	}
}

// TestExecMaxPerAddress: -exec-max-per-address bounds the sessions with a
// program one address has, all services together: past it the session
// closes with 3015 and is counted by reason. Before: no such flag; one
// client could take every -exec-max-procs slot.
func TestExecMaxPerAddress(t *testing.T) {
	srv, addr := startServer(t, "-exec", "/a=cat", "-exec", "/b=cat", "-exec-max-per-address", "1")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = srv.exec.shutdown(ctx)
	})
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	// open returns the frame after the open frame, having sent msg.
	open := func(prefix, msg string) string {
		t.Helper()
		ws, _, err := dialer.Dial("ws://"+addr+prefix+"/000/a/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "o" {
			t.Fatalf("open frame: %q %v", m, err)
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`["`+msg+`"]`))
		_, m, _ := ws.ReadMessage()
		return string(m)
	}
	if m := open("/a", "x"); m != `a["x"]` {
		t.Fatalf("first session: %q, want the echo", m)
	}
	if m := open("/b", "y"); m != `c[3015,"Too many programs for this address"]` {
		t.Errorf("second session from the address: %q, want c[3015,...]", m)
	}
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := `sockjs_exec_sessions_refused_total{reason="per_address",service="/b"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("/metrics lacks %q", want)
	}
}
