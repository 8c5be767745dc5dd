package browser

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/bridge"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
	"github.com/sockjsd/sockjsd/web"
)

// execServer serves programs through the exec bridge, as `cmd/server
// -exec` does: /cat (cat after printing its pid), and the three programs
// of examples/exec with their pages at /exec-pages/.
type execServer struct {
	URL     string
	logFile string
}

func startExecServer(t *testing.T) *execServer {
	t.Helper()
	root := repoRoot(t)
	ex := filepath.Join(root, "examples", "exec")
	tmp := t.TempDir()
	logFile := filepath.Join(tmp, "app.log")
	if err := os.WriteFile(logFile, []byte("first line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	r.SkipClean(true)
	opts := transport.Options{
		SockJSURL: web.ClientPath + "sockjs.min.js",
		Logger:    quietLogger(),
	}
	var handlers []*transport.Handler
	var bridges []*bridge.Bridge
	mount := func(prefix string, o bridge.Options) {
		o.Name, o.Logger, o.KillGrace = prefix, quietLogger(), 2*time.Second
		b, err := bridge.New(o)
		if err != nil {
			t.Fatal(err)
		}
		h := transport.New(prefix, opts, b.Serve)
		gorillamux.Mount(r, h)
		handlers, bridges = append(handlers, h), append(bridges, b)
	}
	env := []string{"COUNTER_DELAY=0.05", "CHAT_ROOM=" + filepath.Join(tmp, "chat.log"), "LOG_FILE=" + logFile}
	mount("/cat", bridge.Options{Argv: []string{"/bin/sh", "-c", `echo "$$|$SOCKJS_TRANSPORT|$QUERY_STRING"; exec cat`}})
	mount("/counter", bridge.Options{Argv: []string{"./counter.sh"}, Dir: ex, Env: env})
	mount("/chat", bridge.Options{Argv: []string{"./chat.sh"}, Dir: ex, Env: env})
	mount("/log", bridge.Options{Argv: []string{"./logtail.sh"}, Dir: ex, Env: env})
	r.PathPrefix("/e2e/").Handler(http.StripPrefix("/e2e/", http.FileServer(http.Dir("testdata"))))
	r.PathPrefix("/exec-pages/").Handler(http.StripPrefix("/exec-pages/", http.FileServer(http.Dir(ex))))
	web.Mount(r, filepath.Join(root, web.DefaultDir), quietLogger())
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, h := range handlers {
			_ = h.Shutdown(ctx)
		}
		for _, b := range bridges {
			if err := b.Shutdown(ctx); err != nil {
				t.Errorf("bridge shutdown: %v", err)
			}
		}
		srv.CloseClientConnections()
		srv.Close()
	})
	return &execServer{URL: srv.URL, logFile: logFile}
}

// execTransports: every sockjs-client transport a same-origin page in
// Chromium runs, over the server transports that carry sessions.
var execTransports = []string{"websocket", "xhr-streaming", "xhr-polling", "eventsource", "jsonp-polling"}

// skipWithoutBrowser skips when Chromium or the npm client is missing, or
// under -short.
func skipWithoutBrowser(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped under -short")
	}
	testenv.Chromium(t) // skips, naming what is missing
	if _, err := os.Stat(filepath.Join(repoRoot(t), web.DefaultDir, "node_modules", "sockjs-client", "dist", "sockjs.min.js")); err != nil {
		t.Skip("sockjs-client is not installed (make deps-client)")
	}
}

type execResult struct {
	Pid       string   `json:"pid"`
	Got       []string `json:"got"`
	Transport string   `json:"transport"`
	Code      int      `json:"code"`
	Reason    string   `json:"reason"`
}

// catJS opens a SockJS connection to a /cat-like service, waits for the
// pid line, sends msgs, closes once they all came back and resolves with
// what happened. transports null: sockjs-client chooses.
const catJS = `(function (url, transports, msgs) { return new Promise(function (resolve, reject) {
  var got = [], pid = null, transport = null;
  var sock = new SockJS(url, null, transports ? {transports: transports, timeout: 10000} : {timeout: 10000});
  var timer = setTimeout(function () { reject(new Error('timed out: pid ' + pid + ', ' + got.length + ' echoes, transport ' + sock.transport)); }, 50000);
  sock.onopen = function () { transport = sock.transport; };
  sock.onmessage = function (e) {
    if (pid === null) { pid = e.data; msgs.forEach(function (m) { sock.send(m); }); return; }
    got.push(e.data);
    if (got.length === msgs.length) { sock.close(); }
  };
  sock.onclose = function (e) { clearTimeout(timer); resolve({pid: pid, got: got, transport: transport, code: e.code, reason: e.reason}); };
}); })`

// counterJS collects every message until the program closes the session.
const counterJS = `(function (url, transports) { return new Promise(function (resolve, reject) {
  var got = [], transport = null;
  var sock = new SockJS(url, null, {transports: transports, timeout: 10000});
  sock.onopen = function () { transport = sock.transport; };
  var timer = setTimeout(function () { reject(new Error('timed out: ' + got.length + ' messages')); }, 50000);
  sock.onmessage = function (e) { got.push(e.data); };
  sock.onclose = function (e) { clearTimeout(timer); resolve({got: got, transport: transport, code: e.code, reason: e.reason}); };
}); })`

// execMessages are lines a program may get: no newline (the bridge
// refuses those), everything else JSON, JavaScript and HTML treat
// specially.
func execMessages(n int) []string {
	out := make([]string, n)
	for i := range out {
		switch i % 3 {
		case 0:
			out[i] = fmt.Sprintf("%03d ascii: the quick brown fox", i)
		case 1:
			out[i] = fmt.Sprintf("%03d unicode: żółć ✓ 日本語 🚀 \u2028\u2029 \u200c\ufeff", i)
		default:
			out[i] = fmt.Sprintf("%03d specials: \"q\" \\ </script><b>&amp; \t \r \x01 \x7f", i)
		}
	}
	return out
}

// TestBrowserExec: the real sockjs-client in Chromium talks to cat and to
// the shell counter over every transport, with WebSocket removed from the
// page, and through the example pages over websocket and xhr-polling;
// every program is gone after its session.
func TestBrowserExec(t *testing.T) {
	skipWithoutBrowser(t)
	s := startExecServer(t)
	b := startBrowser(t)
	p := b.open(t, s.URL+harnessPath)
	msgs := execMessages(60)
	for _, tr := range execTransports {
		t.Run("cat/"+tr, func(t *testing.T) {
			p.t = t
			res := mustEval[execResult](p, time.Minute, fmt.Sprintf("%s(%s, %s, %s)", catJS, jsArg("/cat?tag=x"), jsArg([]string{tr}), jsArg(msgs)))
			checkCat(t, res, tr, msgs)
			// The program saw the transport, and the page's query
			// without the callback parameter jsonp-polling adds.
			if want := "|" + tr + "|tag=x"; !strings.HasSuffix(res.Pid, want) {
				t.Errorf("program's first line %q, want pid%s", res.Pid, want)
			}
		})
		t.Run("counter/"+tr, func(t *testing.T) {
			p.t = t
			res := mustEval[execResult](p, time.Minute, fmt.Sprintf("%s(%s, %s)", counterJS, jsArg("/counter?n=5"), jsArg([]string{tr})))
			if res.Transport != tr || strings.Join(res.Got, ",") != "1,2,3,4,5" || res.Code != bridge.CodeExited || res.Reason != bridge.ReasonExited {
				t.Errorf("counter over %s: %+v, want 1..5 then %d %q", tr, res, bridge.CodeExited, bridge.ReasonExited)
			}
		})
	}
	t.Run("no-websocket", func(t *testing.T) {
		np := b.open(t, s.URL+harnessPath+"?nows=1")
		res := mustEval[execResult](np, time.Minute, fmt.Sprintf("%s(%s, null, %s)", catJS, jsArg("/cat"), jsArg(msgs)))
		checkCat(t, res, "", msgs)
		if res.Transport == "websocket" {
			t.Errorf("a page without WebSocket connected over websocket")
		}
		t.Logf("without WebSocket, sockjs-client chose %s", res.Transport)
	})
	for _, tr := range []string{"websocket", "xhr-polling"} {
		t.Run("pages/"+tr, func(t *testing.T) { testExamplePages(t, b, s, tr) })
	}
}

func checkCat(t *testing.T, res execResult, tr string, msgs []string) {
	t.Helper()
	if tr != "" && res.Transport != tr {
		t.Errorf("transport %q, want %q", res.Transport, tr)
	}
	if !slices.Equal(res.Got, msgs) {
		t.Errorf("%d of %d messages came back through cat, first difference at %d", len(res.Got), len(msgs), firstDiff(res.Got, msgs))
	}
	if res.Code != 1000 {
		t.Errorf("close %d %q, want 1000 from the page", res.Code, res.Reason)
	}
	first, _, _ := strings.Cut(res.Pid, "|")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("first message %q is not a pid", res.Pid)
	}
	waitProcessGroupGone(t, pid, 20*time.Second) // a polling session the page left ends after the disconnect delay (5s)
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// waitProcessGroupGone waits for process group pgid to have no process
// left, zombies included (/proc/<pid>/stat's fifth field).
func waitProcessGroupGone(t *testing.T, pgid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var left []string
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue
			}
			st := string(b)
			if i := strings.LastIndexByte(st, ')'); i >= 0 {
				if f := strings.Fields(st[i+1:]); len(f) > 2 && f[2] == strconv.Itoa(pgid) {
					left = append(left, e.Name()+" "+f[0])
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has %v after %v", pgid, left, d)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc, bounded by d
	}
}

// testExamplePages loads the three example pages forcing transport tr.
func testExamplePages(t *testing.T, b *browser, s *execServer, tr string) {
	type exState struct {
		Lines     []string `json:"lines"`
		Transport string   `json:"transport"`
		Closed    *struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		} `json:"closed"`
	}
	state := func(p *page) exState {
		return mustEval[exState](p, stepTimeout, "({lines: EX.lines, transport: EX.transport, closed: EX.closed})")
	}
	waitState := func(p *page, what string, ok func(exState) bool) exState {
		// p.t is the test the page was opened for; failures go to t.
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := state(p)
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("example page over %s: timed out waiting for %s; state %+v", tr, what, st)
			}
			time.Sleep(20 * time.Millisecond) // polling the page's state, bounded
		}
	}

	counter := b.open(t, s.URL+"/exec-pages/counter.html?n=3&transports="+tr)
	st := waitState(counter, "the counter to finish", func(s exState) bool { return s.Closed != nil })
	if st.Transport != tr || strings.Join(st.Lines, ",") != "1,2,3" || st.Closed.Code != bridge.CodeExited {
		t.Errorf("counter page over %s: %+v", tr, st)
	}

	chat1 := b.open(t, s.URL+"/exec-pages/chat.html?transports="+tr)
	chat2 := b.open(t, s.URL+"/exec-pages/chat.html?transports="+tr)
	for _, p := range []*page{chat1, chat2} {
		waitState(p, "the welcome line", func(s exState) bool { return len(s.Lines) > 0 && s.Transport == tr })
	}
	word := "hello-" + tr
	mustEval[bool](chat1, stepTimeout, "EX.send("+jsArg("/nick alice")+") && EX.send("+jsArg(word+" darn it")+")")
	for _, p := range []*page{chat1, chat2} {
		waitState(p, "alice's line in both tabs", func(s exState) bool {
			return slices.Contains(s.Lines, "alice: "+word+" **** it")
		})
	}

	logPage := b.open(t, s.URL+"/exec-pages/log.html?transports="+tr)
	waitState(logPage, "the log's first line", func(s exState) bool { return slices.Contains(s.Lines, "first line") })
	f, err := os.OpenFile(s.logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	line := "appended while watching over " + tr
	_, _ = fmt.Fprintln(f, line)
	f.Close()
	waitState(logPage, "the appended line", func(s exState) bool { return slices.Contains(s.Lines, line) })
}
