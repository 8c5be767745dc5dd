package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/backend"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/webhook"
)

// The stand-in's secrets and key, given to the backend it calls.
const (
	standInSecret = "stand-in-proxy-secret"
	standInAPIKey = "stand-in-api-key"
)

// startBackend starts lang's backend ("python" or "node") on a free
// loopback port, calling sockjsd at sockjsdURL, and returns its base URL.
// It stops when the test ends; its log is shown when the test failed.
func startBackend(t *testing.T, lang, sockjsdURL string) string {
	t.Helper()
	var argv []string
	switch lang {
	case "python":
		python, err := exec.LookPath("python3")
		if err != nil {
			testenv.Missing(t, "python3 on PATH (Debian: apt-get install python3)")
		}
		argv = []string{python, filepath.Join("python", "backend.py")}
	case "node":
		argv = []string{testenv.Node(t), filepath.Join("node", "backend.js")}
	default:
		t.Fatalf("no backend %q", lang)
	}
	argv = append(argv, "-v", "--listen", "127.0.0.1:0", "--sockjsd", sockjsdURL)
	cmd := exec.Command(argv[0], argv[1:]...)
	// The secrets in the environment, as run.sh passes them.
	cmd.Env = append(os.Environ(), "PROXY_SECRET="+standInSecret, "SOCKJSD_API_KEY="+standInAPIKey, "PYTHONDONTWRITEBYTECODE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the %s backend: %v", lang, err)
	}
	exited := make(chan struct{})
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		first <- line
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("the %s backend did not exit within 10s of SIGKILL", lang)
		}
		if t.Failed() {
			t.Logf("the %s backend's log:\n%s", lang, stderr)
		}
	})
	select {
	case line := <-first:
		i := strings.Index(line, "http://")
		if i < 0 {
			t.Fatalf("the %s backend did not start: %q\n%s", lang, line, stderr)
		}
		return strings.TrimSuffix(strings.TrimSpace(line[i:]), "/")
	case <-time.After(10 * time.Second):
		t.Fatalf("the %s backend did not print its address within 10s\n%s", lang, stderr)
	}
	return ""
}

// standIn plays sockjsd's part of the wire contract (README.md), in a few
// lines on this module's transport package: a /chat service whose sessions
// are the backend's hooks (called with internal/backend, the signed client
// sockjsd's proxy uses), a hub of channels with the {"op":"message"} frames,
// /api/publish and /api/send, and user.online/user.offline webhooks, each
// delivered twice (delivery is at least once). It is not sockjsd: it lets
// the page and the backends be tested together in a browser until the
// proxy is in sockjsd, and then keeps them independent of it.
type standIn struct {
	URL      string
	hooks    *backend.Client
	webhooks *backend.Client // the backend's root, for /webhook

	mu       sync.Mutex
	channels map[string]map[*session.Session]bool
	seq      map[string]int
	users    map[string]map[*session.Session]bool
	errs     []string
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{
		URL:      "http://" + ln.Addr().String(),
		channels: map[string]map[*session.Session]bool{},
		seq:      map[string]int{},
		users:    map[string]map[*session.Session]bool{},
	}
	chat := transport.New("/chat", transport.Options{}, s.serve)
	mux := http.NewServeMux()
	mux.Handle("/chat/", chat)
	client := filepath.Join(testenv.NPMPackage(t, filepath.Join(testenv.RepoRoot(t), "web", "sockjs-client"), "sockjs-client", "deps-client"), "dist", "sockjs.min.js")
	mux.HandleFunc("/sockjs-client/sockjs.min.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, client) })
	mux.HandleFunc("/api/publish", s.api(func(body []byte) (any, error) {
		var p struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.Channel == "" || len(p.Data) == 0 {
			return nil, errors.New("bad publish")
		}
		return map[string]int{"seq": s.publish(p.Channel, p.Data)}, nil
	}))
	mux.HandleFunc("/api/send", s.api(func(body []byte) (any, error) {
		var p struct {
			User string `json:"user"`
			Data string `json:"data"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.User == "" {
			return nil, errors.New("bad send")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for sess := range s.users[p.User] {
			_ = sess.Send(p.Data)
		}
		return map[string]int{"sessions": len(s.users[p.User])}, nil
	}))
	srv := &http.Server{Handler: transport.KeepPaths(mux, chat)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = chat.Shutdown(ctx)
		_ = srv.Close()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("the stand-in's errors: %q", s.errs)
			s.mu.Unlock()
		}
	})
	return s
}

// connectTo points the stand-in at a backend's hooks and webhook.
func (s *standIn) connectTo(t *testing.T, base string) {
	t.Helper()
	var err error
	if s.hooks, err = backend.New(backend.Options{URL: base + "/sockjs", Secret: []byte(standInSecret), Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if s.webhooks, err = backend.New(backend.Options{URL: base, Secret: []byte(standInSecret), Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
}

func (s *standIn) fail(format string, args ...any) {
	s.mu.Lock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *standIn) api(f func([]byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+standInAPIKey {
			s.fail("%s without the API key", r.URL.Path)
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		answer, err := f(body)
		if err != nil {
			s.fail("%s: %v", r.URL.Path, err)
			http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}
}

func (s *standIn) publish(channel string, data json.RawMessage) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq[channel]++
	frame, _ := json.Marshal(map[string]any{"op": "message", "channel": channel, "seq": s.seq[channel], "data": data})
	for sess := range s.channels[channel] {
		_ = sess.Send(string(frame))
	}
	return s.seq[channel]
}

func (s *standIn) subscribe(sess *session.Session, channel string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		delete(s.channels[channel], sess)
		return
	}
	if s.channels[channel] == nil {
		s.channels[channel] = map[*session.Session]bool{}
	}
	s.channels[channel][sess] = true
	frame, _ := json.Marshal(map[string]any{"op": "subscribed", "channel": channel, "seq": s.seq[channel]})
	_ = sess.Send(string(frame))
}

// event delivers a webhook twice under one id, as an at-least-once sender may.
func (s *standIn) event(typ, user string) {
	e := webhook.Event{ID: testenv.NewID(), Type: typ, Time: time.Now(), User: user}
	for range 2 {
		if err := s.webhooks.Call(context.Background(), "/webhook", e, nil); err != nil {
			s.fail("webhook %s: %v", typ, err)
		}
	}
}

type closeAnswer struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

func (s *standIn) serve(sess *session.Session) {
	ctx := context.Background()
	q := sess.Request().Query
	query := map[string]string{}
	for k := range q {
		query[k] = q.Get(k)
	}
	var connect struct {
		User     string       `json:"user"`
		Messages []string     `json:"messages"`
		Channels []string     `json:"channels"`
		Reject   *closeAnswer `json:"reject"`
	}
	err := s.hooks.Call(ctx, "/connect", map[string]any{
		"session": sess.ID(), "service": "/chat", "transport": sess.Transport(),
		"remote": "127.0.0.1", "headers": map[string]string{}, "query": query,
	}, &connect)
	if err != nil {
		s.fail("connect: %v", err)
		_ = sess.Close(1011, "backend unavailable")
		return
	}
	if connect.Reject != nil {
		_ = sess.Close(connect.Reject.Code, connect.Reject.Reason)
		return
	}
	for _, c := range connect.Channels {
		s.subscribe(sess, c, true)
	}
	for _, m := range connect.Messages {
		_ = sess.Send(m)
	}
	user := connect.User
	s.mu.Lock()
	if s.users[user] == nil {
		s.users[user] = map[*session.Session]bool{}
	}
	first := len(s.users[user]) == 0
	s.users[user][sess] = true
	s.mu.Unlock()
	if first {
		s.event(webhook.UserOnline, user)
	}
	defer func() {
		s.mu.Lock()
		for _, subs := range s.channels {
			delete(subs, sess)
		}
		delete(s.users[user], sess)
		last := len(s.users[user]) == 0
		s.mu.Unlock()
		code, reason, _ := sess.CloseInfo()
		if err := s.hooks.Call(ctx, "/close", map[string]any{"session": sess.ID(), "user": user, "code": code, "reason": reason}, nil); err != nil {
			s.fail("close: %v", err)
		}
		if last {
			s.event(webhook.UserOffline, user)
		}
	}()
	for {
		m, err := sess.Recv(sess.Context())
		if err != nil {
			return
		}
		var answer struct {
			Messages    []string     `json:"messages"`
			Subscribe   []string     `json:"subscribe"`
			Unsubscribe []string     `json:"unsubscribe"`
			Close       *closeAnswer `json:"close"`
		}
		if err := s.hooks.Call(ctx, "/message", map[string]any{"session": sess.ID(), "user": user, "messages": []string{m}}, &answer); err != nil {
			s.fail("message: %v", err)
			continue
		}
		for _, m := range answer.Messages {
			_ = sess.Send(m)
		}
		for _, c := range answer.Unsubscribe {
			s.subscribe(sess, c, false)
		}
		for _, c := range answer.Subscribe {
			s.subscribe(sess, c, true)
		}
		if answer.Close != nil {
			_ = sess.Close(answer.Close.Code, answer.Close.Reason)
		}
	}
}
