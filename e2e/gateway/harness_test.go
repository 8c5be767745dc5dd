// Package gateway tests sockjsd as the SockJS gateway in front of HTTP
// backends (issue 16) with real processes: sockjsd binaries built from
// cmd/server, redis-server, and Go backends and webhook receivers over
// real HTTP on 127.0.0.1. Every request a backend or receiver gets is
// checked with internal/sign.Verify.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// proxySecret signs the proxy's requests and the webhooks.
const (
	proxySecret   = "proxy-secret-8d41e7"
	clusterSecret = "cluster-secret-27c0aa"
)

func TestMain(m *testing.M) {
	code := m.Run()
	procs.Cleanup()
	os.Exit(code)
}

// need skips under -short.
func need(t *testing.T) {
	t.Helper()
	testenv.SkipIfShort(t, "sockjsd binaries built from cmd/server")
}

// sockjsd is one sockjsd process.
type sockjsd struct {
	name string
	url  string
	p    *procs.Proc
}

// startSockjsd runs cmd/server on a free port with args and waits for
// /readyz.
func startSockjsd(t *testing.T, name string, args ...string) *sockjsd {
	t.Helper()
	bin := procs.Server(t)
	s := &sockjsd{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", procs.FreePort(t))}
	args = append([]string{bin, "-addr", strings.TrimPrefix(s.url, "http://"), "-proxy-secret", proxySecret}, args...)
	s.p = procs.Start(t, name, args...)
	procs.WaitFor(t, 20*time.Second, name+" to be ready", func() bool { return procs.Status(s.url+"/readyz") == 200 })
	return s
}

// metric sums a metric's samples on s's /metrics.
func (s *sockjsd) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, err := procs.Metric(procs.Get(t, s.url+"/metrics"), name, labels...)
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return v
}

// server is an HTTP server on a fixed loopback address that can be
// stopped (connections refused, open ones cut) and started again there.
type server struct {
	t       *testing.T
	addr    string
	handler http.Handler
	mu      sync.Mutex
	srv     *http.Server
	conns   map[net.Conn]http.ConnState // of srv, open
}

func newServer(t *testing.T, h http.Handler) *server {
	s := &server{t: t, addr: fmt.Sprintf("127.0.0.1:%d", procs.FreePort(t)), handler: h}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) url() string { return "http://" + s.addr }

func (s *server) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; a connection of the previous
	// server's still closing may hold it briefly.
	procs.WaitFor(s.t, 5*time.Second, "to listen on "+s.addr, func() bool {
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	})
	// No IdleTimeout: a kept-alive connection the server closes as
	// sockjsd sends on it fails that request (see dropIdle).
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ConnState: s.connState}
	s.mu.Lock()
	s.srv, s.conns = srv, map[net.Conn]http.ConnState{}
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (s *server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateClosed || st == http.StateHijacked {
		delete(s.conns, c)
	} else if s.conns != nil {
		s.conns[c] = st
	}
}

// dropIdle closes the server's connections without a request in flight
// (idle kept-alive ones, and new ones the client's pool dialed but did
// not use), so that sockjsd's pooled connections (two goroutines each) do
// not count against its goroutine baseline. Call it only while sockjsd
// sends nothing: a request crossing the close would fail.
func (s *server) dropIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, st := range s.conns {
		if st == http.StateIdle || st == http.StateNew {
			_ = c.Close()
		}
	}
}

// stop closes the listener and every connection.
func (s *server) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// readSigned reads a request's body and checks its signature (with
// proxySecret); a bad one fails the test and gets 401.
func readSigned(t *testing.T, w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	return readSignedWith(t, []byte(proxySecret), w, r)
}

func readSignedWith(t *testing.T, secret []byte, w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if err := sign.Verify(secret, r.Header.Get(sign.Header), body, time.Now(), 0); err != nil {
		t.Errorf("%s: signature: %v (header %q)", r.URL.Path, err, r.Header.Get(sign.Header))
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// wire is the union of the proxy's request bodies (docs/proxy.md).
type wire struct {
	Session  string            `json:"session"`
	Service  string            `json:"service"`
	Node     string            `json:"node"`
	User     string            `json:"user"`
	Messages []string          `json:"messages"`
	Query    map[string]string `json:"query"`
	Code     int               `json:"code"`
	Reason   string            `json:"reason"`
}

// backend is a proxy backend written against the wire contract at
// /base: connect accepts with the user of the query's "user", message
// echoes (through onMessage when set), close is counted. Every request's
// signature is checked.
type backend struct {
	t    *testing.T
	srv  *server
	fail atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	// onMessage, when set, sees every message batch first (before the
	// echo) and may delay it.
	onMessage func(w wire)
	// connected is each accepted connect's body by the query's "tag".
	connected sync.Map
	connects  atomic.Int64
	closes    atomic.Int64
	requests  atomic.Int64
}

func newBackend(t *testing.T) *backend {
	b := &backend{t: t}
	b.srv = newServer(t, http.HandlerFunc(b.serve))
	return b
}

func (b *backend) base() string { return b.srv.url() + "/base" }

// failWith makes every request answer through f (nil: back to normal).
func (b *backend) failWith(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		b.fail.Store(nil)
		return
	}
	b.fail.Store(&f)
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	body, ok := readSigned(b.t, w, r)
	if !ok {
		return
	}
	if f := b.fail.Load(); f != nil && (*f)(w, r) {
		return
	}
	var m wire
	if err := json.Unmarshal(body, &m); err != nil || m.Session == "" {
		b.t.Errorf("%s: body %q: %v", r.URL.Path, body, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var answer any = struct{}{}
	switch r.URL.Path {
	case "/base/connect":
		b.connects.Add(1)
		if tag := m.Query["tag"]; tag != "" {
			b.connected.Store(tag, m)
		}
		answer = map[string]any{"user": m.Query["user"]}
	case "/base/message":
		if b.onMessage != nil {
			b.onMessage(m)
		}
		answer = map[string]any{"messages": m.Messages}
	case "/base/close":
		b.closes.Add(1)
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// session is the backend's view of the session tagged tag.
func (b *backend) session(t *testing.T, tag string) wire {
	t.Helper()
	var m any
	procs.WaitFor(t, 10*time.Second, "the connect of "+tag, func() bool {
		var ok bool
		m, ok = b.connected.Load(tag)
		return ok
	})
	return m.(wire)
}

// dial opens a session over transport with the test's HTTP client.
func dial(t *testing.T, hc *http.Client, url, transport string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{Transports: []string{transport}, HTTPClient: hc, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dial %s over %s: %v", url, transport, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recvWithin takes the next message, failing the test after d.
func recvWithin(t *testing.T, c *client.Conn, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := c.Recv(ctx)
	if err != nil {
		code, reason, _ := c.CloseInfo()
		t.Fatalf("recv over %s: %v (closed %d %q)", c.Transport(), err, code, reason)
	}
	return m
}

// errTimeout is waitClosed's error when the connection stayed open.
var errTimeout = errors.New("still open")

// waitClosed waits up to d for c to close and returns its close code.
func waitClosed(c *client.Conn, d time.Duration) (int, string, error) {
	select {
	case <-c.Done():
		code, reason, _ := c.CloseInfo()
		return code, reason, nil
	case <-time.After(d):
		return 0, "", errTimeout
	}
}
