//go:build linux

package bridge_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/bridge"
	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/transport"
)

// TestCat: messages go to stdin as lines and come back from stdout as
// messages, in order, over every Go client transport; closing the client
// ends the program.
func TestCat(t *testing.T) {
	s := startServer(t, bridge.Options{Argv: sh("echo $$; exec cat")}, transport.Options{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, s.URL, tr)
			pid := pidOf(t, c)
			for i := 0; i < 100; i++ {
				if err := c.Send(msg(i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 100; i++ {
				if got := recv(t, c); got != msg(i) {
					t.Fatalf("message %d: got %q, want %q", i, got, msg(i))
				}
			}
			_ = c.Close()
			waitGroupGone(t, pid, 10*time.Second)
		})
	}
}

// TestExit: the program's exit closes the session with 3000 once its
// output is delivered; the reason carries a non-zero status or a signal.
func TestExit(t *testing.T) {
	cases := []struct {
		name, script string
		reason       string
		class        bridge.ExitClass
	}{
		{"zero", "printf 'a\\nb\\nlast without newline'", "Program exited", bridge.ExitOK},
		{"status", "printf 'a\\nb\\nlast without newline'; exit 3", "Program exited with status 3", bridge.ExitError},
		{"signal", "printf 'a\\nb\\nlast without newline'; kill -SEGV $$", "Program exited: killed by signal 11 (segmentation fault)", bridge.ExitSignal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
				s := startServer(t, bridge.Options{Argv: sh(tc.script)}, transport.Options{})
				c := dial(t, s.URL, tr)
				code, reason, msgs := waitClosed(t, c)
				if code != bridge.CodeExited || reason != tc.reason {
					t.Errorf("%s: close %d %q, want %d %q", tr, code, reason, bridge.CodeExited, tc.reason)
				}
				if want := "a|b|last without newline"; strings.Join(msgs, "|") != want {
					t.Errorf("%s: messages %q, want %q", tr, msgs, want)
				}
				waitFor(t, 10*time.Second, "the exit to be counted", func() bool { return s.obs.exited[tc.class].Load() == 1 })
			}
		})
	}
}

// TestEnvironment: the program sees the request as CGI does, the opaque
// session id, and none of the server's other variables; cookies only
// when configured.
func TestEnvironment(t *testing.T) {
	t.Setenv("SOCKJSD_HUB_API_KEY", "secret-must-not-leak")
	t.Setenv("LANG", "C.UTF-8")
	s := startServer(t, bridge.Options{Argv: []string{"env"}, Env: []string{"EXTRA=1", "REMOTE_ADDR=spoofed"}}, transport.Options{})
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			hdr := map[string][]string{"Cookie": {"sid=secret"}, "Accept-Language": {"pl"}, "Authorization": {"Bearer x"}}
			c, err := sockjs.Dial(ctx, s.URL+"?tag=t1&x=a%20b", sockjs.Options{Transports: []string{tr}, Header: hdr})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _, lines := waitClosed(t, c)
			env := map[string]string{}
			for _, l := range lines {
				k, v, _ := strings.Cut(l, "=")
				env[k] = v
			}
			want := map[string]string{
				"REMOTE_ADDR":          "127.0.0.1",
				"QUERY_STRING":         "tag=t1&x=a+b",
				"SOCKJS_TRANSPORT":     tr,
				"SCRIPT_NAME":          "/exec",
				"EXTRA":                "1",
				"LANG":                 "C.UTF-8",
				"HTTP_ACCEPT_LANGUAGE": "pl",
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s=%q, want %q", k, env[k], v)
				}
			}
			for _, k := range []string{"SOCKJSD_HUB_API_KEY", "HTTP_COOKIE", "HTTP_AUTHORIZATION"} {
				if v, ok := env[k]; ok {
					t.Errorf("%s=%q reached the program", k, v)
				}
			}
			if id := env["SOCKJS_SESSION_ID"]; len(id) < 20 {
				t.Errorf("SOCKJS_SESSION_ID=%q, want the opaque id", id)
			}
		})
	}
}

// TestNewlineRefused: a message with a newline closes the session with
// 3003 and never reaches the program as two lines.
func TestNewlineRefused(t *testing.T) {
	s := startServer(t, bridge.Options{Argv: sh("echo $$; exec cat")}, transport.Options{})
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
		c := dial(t, s.URL, tr)
		pid := pidOf(t, c)
		_ = c.Send("fine")
		if got := recv(t, c); got != "fine" {
			t.Fatalf("got %q", got)
		}
		_ = c.Send("two\nlines")
		code, reason, msgs := waitClosed(t, c)
		if code != bridge.CodeBadMessage || reason != bridge.ReasonNewline || len(msgs) != 0 {
			t.Errorf("%s: close %d %q after %q, want %d %q and nothing", tr, code, reason, msgs, bridge.CodeBadMessage, bridge.ReasonNewline)
		}
		waitGroupGone(t, pid, 10*time.Second)
	}
}

// TestParseCommand: the documented quoting rules.
func TestParseCommand(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "cat", want: []string{"cat"}},
		{in: "  tail  -f\t/var/log/x.log ", want: []string{"tail", "-f", "/var/log/x.log"}},
		{in: `sh -c 'echo "$HOME" | tr a b'`, want: []string{"sh", "-c", `echo "$HOME" | tr a b`}},
		{in: `echo "a \"b\" \\ \n $X"`, want: []string{"echo", `a "b" \ \n $X`}},
		{in: `a\ b c\'d`, want: []string{"a b", "c'd"}},
		{in: `x '' ""`, want: []string{"x", "", ""}},
		{in: `x 'a'"b"c`, want: []string{"x", "abc"}},
		{in: "", err: true},
		{in: "   ", err: true},
		{in: "x 'open", err: true},
		{in: `x "open`, err: true},
		{in: `x \`, err: true},
	}
	for _, tc := range cases {
		got, err := bridge.ParseCommand(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseCommand(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") || len(got) != len(tc.want) {
			t.Errorf("ParseCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestNewChecksCommand: a missing program fails at start-up.
func TestNewChecksCommand(t *testing.T) {
	for _, argv := range [][]string{{"no-such-program-xyz"}, {"./no-such-script.sh"}, {"/etc/passwd"}} {
		if _, err := bridge.New(bridge.Options{Argv: argv, Logger: quiet()}); err == nil {
			t.Errorf("New(%q): no error", argv)
		}
	}
	if _, err := bridge.New(bridge.Options{Argv: []string{"cat"}, Env: []string{"NOEQUALS"}, Logger: quiet()}); err == nil {
		t.Error("New with Env NOEQUALS: no error")
	}
}

// TestStderrLogged: stderr lines go to the log with the session's opaque
// id, never to the client; a long one is truncated.
func TestStderrLogged(t *testing.T) {
	var buf testenv.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, nil))
	s := startServer(t, bridge.Options{Logger: lg, Argv: sh(`echo oops >&2; head -c 10000 /dev/zero | tr '\0' e >&2; echo >&2; echo $SOCKJS_SESSION_ID`)}, transport.Options{})
	c := dial(t, s.URL, sockjs.XHRPolling)
	code, _, msgs := waitClosed(t, c)
	if code != bridge.CodeExited || len(msgs) != 1 {
		t.Fatalf("close %d after %q, want 3000 after the session id alone", code, msgs)
	}
	id := msgs[0]
	waitFor(t, 5*time.Second, "the stderr lines in the log", func() bool {
		return strings.Count(buf.String(), "exec: stderr") == 2
	})
	out := buf.String()
	if !strings.Contains(out, "session="+id+" line=oops truncated=false") {
		t.Errorf("log lacks the stderr line with session=%s:\n%s", id, out)
	}
	if !strings.Contains(out, "truncated=true") || strings.Contains(out, strings.Repeat("e", 4097)) {
		t.Errorf("a 10,000-byte stderr line must be logged truncated to 4 KiB")
	}
}

// TestCookieConfigured: listing Cookie in Headers (with a transport that
// keeps cookies) passes it as HTTP_COOKIE; nothing else changes.
func TestCookieConfigured(t *testing.T) {
	s := startServer(t, bridge.Options{Argv: sh(`echo "c=$HTTP_COOKIE a=$HTTP_AUTHORIZATION"`), Headers: []string{"Cookie"}}, transport.Options{ExposeCookies: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := sockjs.Dial(ctx, s.URL, sockjs.Options{Transports: []string{sockjs.WebSocket}, Header: map[string][]string{"Cookie": {"sid=1"}, "Authorization": {"Bearer x"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, msgs := waitClosed(t, c); len(msgs) != 1 || msgs[0] != "c=sid=1 a=" {
		t.Errorf("got %q, want the cookie and no authorization", msgs)
	}
}
