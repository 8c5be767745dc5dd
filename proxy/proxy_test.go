package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	sockjsclient "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/proxy"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

var secret = []byte("test-secret")

// fakeBackend is a backend written against the wire contract: it checks
// every signature, records what it is told and answers through hooks.
type fakeBackend struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	connects []map[string]any
	messages map[string][]string // by session, in arrival order
	closes   map[string]map[string]any
	inflight map[string]bool // a message request in flight, by session
	overlap  bool            // two message requests of one session at once

	connect func(body map[string]any) (int, string)
	message func(session string, msgs []string) (int, string)
}

func newBackend(t *testing.T) *fakeBackend {
	b := &fakeBackend{t: t, messages: map[string][]string{}, closes: map[string]map[string]any{}, inflight: map[string]bool{}}
	b.connect = func(map[string]any) (int, string) { return 200, `{}` }
	b.message = func(_ string, msgs []string) (int, string) {
		out, _ := json.Marshal(map[string]any{"messages": upper(msgs)})
		return 200, string(out)
	}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func upper(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = strings.ToUpper(m)
	}
	return out
}

func (b *fakeBackend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := sign.Verify(secret, r.Header.Get(sign.Header), body, time.Now(), 0); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		b.t.Errorf("%s: %v", r.URL.Path, err)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		b.t.Errorf("%s: body not JSON: %v", r.URL.Path, err)
	}
	sid, _ := m["session"].(string)
	status, answer := 200, `{}`
	switch r.URL.Path {
	case "/connect":
		b.mu.Lock()
		b.connects = append(b.connects, m)
		b.mu.Unlock()
		status, answer = b.connect(m)
	case "/message":
		var msgs []string
		for _, x := range m["messages"].([]any) {
			msgs = append(msgs, x.(string))
		}
		b.mu.Lock()
		if b.inflight[sid] {
			b.overlap = true
		}
		b.inflight[sid] = true
		b.messages[sid] = append(b.messages[sid], msgs...)
		b.mu.Unlock()
		status, answer = b.message(sid, msgs)
		b.mu.Lock()
		b.inflight[sid] = false
		b.mu.Unlock()
	case "/close":
		b.mu.Lock()
		if b.closes[sid] != nil {
			b.t.Errorf("second close for %s", sid)
		}
		b.closes[sid] = m
		b.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

// closed waits until the backend got sid's close.
func (b *fakeBackend) closed(t *testing.T, sid string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		m := b.closes[sid]
		b.mu.Unlock()
		if m != nil {
			return m
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no close for %s", sid)
	return nil
}

// connected waits until the backend answered n connects and returns the
// nth's body. The open frame is written before the connect is answered,
// so a client may be open before its connect arrived.
func (b *fakeBackend) connected(t *testing.T, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		if len(b.connects) >= n {
			m := b.connects[n-1]
			b.mu.Unlock()
			return m
		}
		b.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no connect %d", n)
	return nil
}

func (b *fakeBackend) lastSession(t *testing.T) string {
	t.Helper()
	b.mu.Lock()
	n := len(b.connects)
	b.mu.Unlock()
	return b.connected(t, max(n, 1))["session"].(string)
}

type gateway struct {
	url string
	gw  *proxy.Gateway
	api string
}

// startGateway serves each backend as a proxied service (/app0, /app1,
// ...) and the server API at /api.
func startGateway(t *testing.T, opts proxy.Options, backends ...*fakeBackend) gateway {
	t.Helper()
	opts.Secret = secret
	gw, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	r.SkipClean(true)
	var hs []*transport.Handler
	for i, b := range backends {
		serve, err := gw.Service(fmt.Sprintf("/app%d", i), b.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, transport.New(fmt.Sprintf("/app%d", i), transport.Options{Session: session.Options{DisconnectDelay: time.Second}}, serve))
	}
	gorillamux.Mount(r, hs...)
	proxy.NewAPI(gw, proxy.APIOptions{Key: "k"}).Mount(r, "/api")
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, h := range hs {
			_ = h.Shutdown(ctx)
		}
		_ = gw.Shutdown(ctx)
		srv.Close()
	})
	return gateway{url: srv.URL, gw: gw, api: srv.URL + "/api"}
}

func dial(t *testing.T, url, transport string) *sockjsclient.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sockjsclient.Dial(ctx, url, sockjsclient.Options{Transports: []string{transport}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func recv(t *testing.T, c *sockjsclient.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// closedWith waits (bounded) for the client's close and returns it.
func closedWith(t *testing.T, c *sockjsclient.Conn, within time.Duration) (int, string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(within):
		t.Fatalf("not closed within %s", within)
	}
	code, reason, _ := c.CloseInfo()
	return code, reason
}

var transports = []string{"websocket", "xhr-streaming", "xhr-polling"}

func TestEchoInOrder(t *testing.T) {
	b := newBackend(t)
	g := startGateway(t, proxy.Options{}, b)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, g.url+"/app0", tr)
			const n = 300
			go func() {
				for i := range n {
					_ = c.Send(fmt.Sprintf("m%d", i))
				}
			}()
			for i := range n {
				if got, want := recv(t, c), fmt.Sprintf("M%d", i); got != want {
					t.Fatalf("message %d: %q, want %q", i, got, want)
				}
			}
			sid := b.lastSession(t)
			_ = c.Close()
			cl := b.closed(t, sid)
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.overlap {
				t.Fatal("two message requests of one session were in flight at once")
			}
			if len(b.messages[sid]) != n {
				t.Fatalf("backend got %d messages, want %d", len(b.messages[sid]), n)
			}
			if cl["code"] == nil {
				t.Fatalf("close without a code: %v", cl)
			}
		})
	}
}

func TestConnectBody(t *testing.T) {
	b := newBackend(t)
	g := startGateway(t, proxy.Options{Node: "http://node-a"}, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sockjsclient.Dial(ctx, g.url+"/app0?token=abc&room=1&room=2", sockjsclient.Options{
		Transports: []string{"xhr-polling"}, Header: http.Header{"User-Agent": {"test-agent"}, "Cookie": {"secret=1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := b.connected(t, 1)
	if m["service"] != "/app0" || m["transport"] != "xhr-polling" || m["remote"] != "127.0.0.1" || m["node"] != "http://node-a" {
		t.Fatalf("connect: %v", m)
	}
	q := m["query"].(map[string]any)
	if q["token"] != "abc" || q["room"] != "1" {
		t.Fatalf("query: %v", q)
	}
	h := m["headers"].(map[string]any)
	if h["User-Agent"] != "test-agent" || h["Cookie"] != nil {
		t.Fatalf("headers: %v", h)
	}
	if sid := m["session"].(string); len(sid) != 22 || strings.Contains(c.Transport(), sid) {
		t.Fatalf("session id %q", sid)
	}
}

func TestConnectAnswer(t *testing.T) {
	b := newBackend(t)
	b.connect = func(m map[string]any) (int, string) {
		if m["query"].(map[string]any)["password"] != "good" {
			return 200, `{"reject":{"code":4001,"reason":"bad password"}}`
		}
		return 200, `{"user":"alice","meta":{"role":"admin"},"messages":["welcome","alice"]}`
	}
	var metaSeen json.RawMessage
	b.message = func(sid string, msgs []string) (int, string) {
		return 200, `{"messages":["ok"]}`
	}
	g := startGateway(t, proxy.Options{}, b)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, g.url+"/app0?password=bad", tr)
			if code, reason := closedWith(t, c, 5*time.Second); code != 4001 || reason != "bad password" {
				t.Fatalf("rejected: %d %q", code, reason)
			}
			c = dial(t, g.url+"/app0?password=good", tr)
			if m := recv(t, c); m != "welcome" {
				t.Fatalf("first message %q", m)
			}
			if m := recv(t, c); m != "alice" {
				t.Fatalf("second message %q", m)
			}
		})
	}
	_ = metaSeen
}

func TestMessagesDuringConnectAreKept(t *testing.T) {
	b := newBackend(t)
	release := make(chan struct{})
	b.connect = func(map[string]any) (int, string) {
		<-release
		return 200, `{"user":"u"}`
	}
	g := startGateway(t, proxy.Options{}, b)
	// The open frame is written before the connect is answered; the
	// client's messages wait for it.
	c := dial(t, g.url+"/app0", "websocket")
	for i := range 50 {
		_ = c.Send(fmt.Sprint(i))
	}
	// Let the messages reach the gateway before the connect is answered.
	time.Sleep(50 * time.Millisecond)
	close(release)
	for i := range 50 {
		if got := recv(t, c); got != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, got)
		}
	}
}

func TestBackendFailures(t *testing.T) {
	ok := newBackend(t)
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		answer func(hold chan struct{}) (int, string)
		code   int
	}{
		{"500", func(hold chan struct{}) (int, string) { return 500, "oops" }, proxy.CodeBackendFailed},
		{"not JSON", func(hold chan struct{}) (int, string) { return 200, "<html>" }, proxy.CodeBackendFailed},
		{"too large", func(hold chan struct{}) (int, string) {
			return 200, `{"messages":["` + strings.Repeat("x", 2<<20) + `"]}`
		}, proxy.CodeBackendFailed},
		{"slow", func(hold chan struct{}) (int, string) { <-hold; return 200, "{}" }, proxy.CodeBackendTimeout},
		{"bad close code", func(hold chan struct{}) (int, string) { return 200, `{"close":{"code":1000,"reason":"x"}}` }, proxy.CodeBackendFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := newBackend(t)
			hold := make(chan struct{})
			t.Cleanup(func() { close(hold) }) // before bad's server closes: cleanups run last first
			bad.message = func(string, []string) (int, string) { return tc.answer(hold) }
			g := startGateway(t, proxy.Options{Timeout: timeout}, bad, ok)
			c := dial(t, g.url+"/app0", "websocket")
			other := dial(t, g.url+"/app1", "xhr-polling")
			start := time.Now()
			_ = c.Send("hello")
			code, reason := closedWith(t, c, timeout+time.Second)
			if code != tc.code {
				t.Fatalf("closed %d %q after %s, want %d", code, reason, time.Since(start), tc.code)
			}
			// The other service is untouched.
			_ = other.Send("still")
			if m := recv(t, other); m != "STILL" {
				t.Fatalf("other service: %q", m)
			}
		})
	}
	t.Run("down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		gw, _ := proxy.New(proxy.Options{Secret: secret, Timeout: timeout})
		serve, _ := gw.Service("/down", "http://"+addr)
		h := transport.New("/down", transport.Options{}, serve)
		srv := httptest.NewServer(h)
		defer srv.Close()
		c := dial(t, srv.URL+"/down", "xhr-streaming")
		if code, _ := closedWith(t, c, timeout+time.Second); code != proxy.CodeBackendFailed {
			t.Fatalf("down: %d", code)
		}
	})
}

func TestBacklogClosesTheSession(t *testing.T) {
	b := newBackend(t)
	hold := make(chan struct{})
	defer close(hold)
	b.message = func(string, []string) (int, string) { <-hold; return 200, "{}" }
	g := startGateway(t, proxy.Options{MaxPendingBytes: 10 << 10}, b)
	c := dial(t, g.url+"/app0", "websocket")
	big := strings.Repeat("x", 1<<10)
	for range 30 {
		_ = c.Send(big)
	}
	if code, _ := closedWith(t, c, 5*time.Second); code != proxy.CodeBacklog {
		t.Fatalf("closed %d, want %d", code, proxy.CodeBacklog)
	}
}

func TestBackendCloses(t *testing.T) {
	b := newBackend(t)
	b.message = func(string, []string) (int, string) {
		return 200, `{"messages":["bye"],"close":{"code":4000,"reason":"bye"}}`
	}
	g := startGateway(t, proxy.Options{}, b)
	c := dial(t, g.url+"/app0", "xhr-polling")
	_ = c.Send("x")
	if m := recv(t, c); m != "bye" {
		t.Fatalf("got %q", m)
	}
	if code, reason := closedWith(t, c, 5*time.Second); code != 4000 || reason != "bye" {
		t.Fatalf("closed %d %q", code, reason)
	}
	cl := b.closed(t, b.lastSession(t))
	if cl["code"].(float64) != 4000 {
		t.Fatalf("close request: %v", cl)
	}
}

func apiCall(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func TestServerAPI(t *testing.T) {
	b := newBackend(t)
	b.connect = func(m map[string]any) (int, string) {
		return 200, `{"user":"` + m["query"].(map[string]any)["user"].(string) + `"}`
	}
	g := startGateway(t, proxy.Options{}, b)
	a1 := dial(t, g.url+"/app0?user=alice", "websocket")
	a2 := dial(t, g.url+"/app0?user=alice", "xhr-polling")
	bob := dial(t, g.url+"/app0?user=bob", "xhr-streaming")
	b.connected(t, 3)

	// A session is listed once its connect is answered, which may come
	// after the client's open frame.
	listed := func(user string, n int) []any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, m := apiCall(t, "GET", g.api+"/sessions?user="+user, "")
			if st == 200 && len(m["sessions"].([]any)) == n {
				return m["sessions"].([]any)
			}
			if time.Now().After(deadline) {
				t.Fatalf("sessions of %s: %d %v", user, st, m)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	listed("alice", 2)
	bobs := listed("bob", 1)[0].(map[string]any)
	bobID := bobs["session"].(string)
	if bobs["transport"] != "xhr-streaming" || bobs["service"] != "/app0" {
		t.Fatalf("bob's session: %v", bobs)
	}
	st, m := apiCall(t, "POST", g.api+"/send", `{"user":"alice","data":"hi alice"}`)
	if st != 200 || m["sessions"].(float64) != 2 {
		t.Fatalf("send to user: %d %v", st, m)
	}
	for _, c := range []*sockjsclient.Conn{a1, a2} {
		if got := recv(t, c); got != "hi alice" {
			t.Fatalf("alice got %q", got)
		}
	}
	st, m = apiCall(t, "POST", g.api+"/send", `{"session":"`+bobID+`","data":"hi bob"}`)
	if st != 200 || m["sessions"].(float64) != 1 || recv(t, bob) != "hi bob" {
		t.Fatalf("send to session: %d %v", st, m)
	}
	st, m = apiCall(t, "POST", g.api+"/send", `{"sessions":["`+bobID+`","nope"],"data":"again"}`)
	if st != 200 || m["sessions"].(float64) != 1 || recv(t, bob) != "again" {
		t.Fatalf("send to sessions: %d %v", st, m)
	}
	st, m = apiCall(t, "POST", g.api+"/disconnect", `{"user":"alice","code":4002,"reason":"kicked"}`)
	if st != 200 || m["sessions"].(float64) != 2 {
		t.Fatalf("disconnect: %d %v", st, m)
	}
	for _, c := range []*sockjsclient.Conn{a1, a2} {
		if code, reason := closedWith(t, c, 5*time.Second); code != 4002 || reason != "kicked" {
			t.Fatalf("alice closed %d %q", code, reason)
		}
	}
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/send", `{"user":"a","session":"b","data":"x"}`},
		{"POST", "/send", `{"user":"a"}`},
		{"POST", "/send", `{"user":"a","data":1}`},
		{"POST", "/send", `not json`},
		{"POST", "/disconnect", `{"user":"a","code":1000}`},
		{"GET", "/sessions", ``},
	} {
		if st, m := apiCall(t, tc.method, g.api+tc.path, tc.body); st != 400 {
			t.Errorf("%s %s: %d %v, want 400", tc.path, tc.body, st, m)
		}
	}
	req, _ := http.NewRequest("POST", g.api+"/send", strings.NewReader(`{"user":"a","data":"x"}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("no key: %d", res.StatusCode)
	}
}

// A backend that is down fails every session at once: that is one log
// line a second, not one per session.
func TestBackendDownLogsOnce(t *testing.T) {
	b := newBackend(t)
	b.message = func(string, []string) (int, string) { return 500, "down" }
	var buf syncBuffer
	g := startGateway(t, proxy.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, b)
	var cs []*sockjsclient.Conn
	for range 20 {
		cs = append(cs, dial(t, g.url+"/app0", "websocket"))
	}
	for _, c := range cs {
		_ = c.Send("x")
	}
	for _, c := range cs {
		if code, _ := closedWith(t, c, 5*time.Second); code != proxy.CodeBackendFailed {
			t.Fatalf("closed %d", code)
		}
	}
	if n := strings.Count(buf.String(), "proxy: message failed"); n < 1 || n > 3 {
		t.Fatalf("%d log lines for 20 sessions failing at once, want 1 (a second apart at most 3):\n%s", n, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
