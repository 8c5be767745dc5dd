package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/web"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t testing.TB) string { return testenv.RepoRoot(t) }

// serverConfig says how to build the server under test.
type serverConfig struct {
	// AllowedOrigins is transport.Options.AllowedOrigins.
	AllowedOrigins []string
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
}

// server is the server under test: what cmd/server serves (the protocol
// services, the client and the demo page) plus the test harness page at
// /e2e/, on a real loopback listener.
type server struct {
	t        testing.TB
	cfg      serverConfig
	root     string
	ln       *connTracker
	http     *http.Server
	handlers []*transport.Handler
	echo     *transport.Handler
	hub      *hub.Hub
	rtt      *rttLog // the service pings' round trips
	done     chan struct{}
}

func startServer(t testing.TB, cfg serverConfig) *server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	ln, err := listen(cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, cfg, ln)
	t.Cleanup(s.stop)
	return s
}

// listen binds addr. Go listeners set SO_REUSEADDR, so a restarted server
// can bind the port its predecessor just released.
func listen(addr string) (*connTracker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &connTracker{Listener: ln, conns: map[net.Conn]struct{}{}}, nil
}

// connTracker remembers every accepted connection, hijacked websockets
// included (http.Server.Close does not close those), so that crash can
// drop them all.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

func (l *connTracker) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
}

func newServer(t testing.TB, cfg serverConfig, ln *connTracker) *server {
	s := &server{t: t, cfg: cfg, root: repoRoot(t), ln: ln, done: make(chan struct{}), rtt: &rttLog{}}
	s.http = &http.Server{
		Handler:           s.router(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(quietLogger().Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(s.done)
		_ = s.http.Serve(ln)
	}()
	return s
}

// quietLogger keeps the rejected-request lines (expected in the origin
// tests) out of the test output unless -v asks for everything.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (s *server) router() http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true)
	opts := transport.Options{
		AllowedOrigins: s.cfg.AllowedOrigins,
		SockJSURL:      web.ClientPath + "sockjs.min.js",
		Logger:         quietLogger(),
	}
	s.handlers = services.Protocol(opts)
	for _, h := range s.handlers {
		if h.Prefix() == "/echo" {
			s.echo = h
		}
	}
	// The hub, as cmd/server mounts it, for the hub scenario: its round
	// trips (its own JSON ping, and websocket pings) go to real metrics
	// at /metrics. Like cmd/server's, /hub gets no in-band service ping.
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.hub = hub.New(hub.Options{Rules: hub.Rules{BrowserPublish: []string{"chat.*"}}, PingInterval: 200 * time.Millisecond, Observer: met, Logger: quietLogger()})
	hub.NewAPI(s.hub, hub.APIOptions{}).Mount(r, "/api")
	hubOpts := opts
	hubOpts.Session.Observer = met
	// The demo page's echo service pings its sessions, as cmd/server's does.
	pinged := opts
	pinged.PingInterval = demoPing
	pinged.Session.Observer = s.rtt
	s.handlers = append(s.handlers, transport.New("/hub", hubOpts, s.hub.Serve), services.Demo(pinged, demoPing))
	services.Mount(r, s.handlers...)
	r.PathPrefix("/e2e/").Handler(http.StripPrefix("/e2e/", http.FileServer(http.Dir("testdata"))))
	web.Mount(r, filepath.Join(s.root, web.DefaultDir), quietLogger())
	return r
}

// demoPing is the service ping interval of the demo page's services.
const demoPing = 200 * time.Millisecond

// rttLog records the service pings' round trips by service/transport.
type rttLog struct {
	session.NopObserver
	mu  sync.Mutex
	got map[string]int
}

func (l *rttLog) ObserveRTT(service string, t session.Transport, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string]int{}
	}
	l.got[service+"/"+t.String()]++
}

func (l *rttLog) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[key]
}

// URL is the server's base URL, without a trailing slash.
func (s *server) URL() string { return "http://" + s.ln.Addr().String() }

// Addr is the server's listen address.
func (s *server) Addr() string { return s.ln.Addr().String() }

// stop shuts the server down as cmd/server does: every session gets
// c[1001,"Going away"], then the listener and connections close.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range s.handlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = h.Shutdown(ctx)
		}()
	}
	wg.Wait()
	_ = s.http.Close()
	s.ln.closeAll()
	<-s.done
}

// crash closes the listener and every connection at once, with no close
// frames: what clients see when the process dies.
func (s *server) crash() {
	_ = s.http.Close()
	s.ln.closeAll()
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, h := range s.handlers {
		_ = h.Shutdown(ctx) // ends the sessions left behind, so no goroutine outlives the test
	}
}

// restart starts a new server (new sessions, nothing remembered) on the
// same address after the old one stopped.
func (s *server) restart() *server {
	s.t.Helper()
	ln, err := listen(s.Addr())
	if err != nil {
		s.t.Fatal(err)
	}
	n := newServer(s.t, s.cfg, ln)
	s.t.Cleanup(n.stop)
	return n
}

// sessionTransports are the transports of the live /echo sessions whose
// connection URL carried ?tag=tag, as the server saw them. A client that
// fell back leaves one session per abandoned attempt (with the same URL)
// until the disconnect delay expires them.
func (s *server) sessionTransports(tag string) []string {
	var found []string
	s.echo.Range(func(ss *session.Session) {
		if ss.Request().Query.Get("tag") == tag {
			found = append(found, ss.Transport().String())
		}
	})
	return found
}

// proxyMode says what a test proxy does to the traffic it forwards.
type proxyMode int

const (
	// noUpgrade forwards everything but drops the Upgrade header, as
	// proxies without websocket support do; the server then refuses the
	// websocket handshake.
	noUpgrade proxyMode = iota
	// buffering also reads every response whole before it sends a byte,
	// as buffering proxies (nginx's proxy_buffering, some corporate
	// proxies) do: streaming transports then deliver nothing until the
	// response ends.
	buffering
)

// maxBuffered bounds what the buffering proxy holds for one response.
const maxBuffered = 8 << 20

// proxy is a reverse proxy in front of the server under test.
type proxy struct {
	URL string // base URL, without a trailing slash
	// upgrades counts the websocket handshakes the proxy refused to pass.
	upgrades atomic.Int64

	mu  sync.Mutex
	log []string // "METHOD path -> status (duration)" of each request, in order of completion
}

// requests returns the log of the requests the proxy forwarded.
func (px *proxy) requests() []string {
	px.mu.Lock()
	defer px.mu.Unlock()
	return slices.Clone(px.log)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// startProxy runs a reverse proxy to target on its own loopback listener.
func startProxy(t testing.TB, target string, mode proxyMode) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // keep the page's Host, as a transparent proxy does
		},
		ErrorLog: slog.NewLogLogger(quietLogger().Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
			}
		},
	}
	if mode == buffering {
		rp.ModifyResponse = func(resp *http.Response) error {
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxBuffered+1))
			_ = resp.Body.Close()
			if err != nil {
				return fmt.Errorf("buffering proxy: read response: %w", err)
			}
			if len(body) > maxBuffered {
				return errors.New("buffering proxy: response too large")
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
			resp.TransferEncoding = nil
			return nil
		}
	}
	px := &proxy{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			px.upgrades.Add(1)
		}
		r = r.Clone(r.Context())
		r.Header.Del("Upgrade")
		r.Header.Del("Connection")
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		px.mu.Lock()
		px.log = append(px.log, fmt.Sprintf("%s %s -> %d (%v)", r.Method, r.URL.Path, sw.status, time.Since(start).Round(time.Millisecond)))
		px.mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	px.URL = "http://" + ln.Addr().String()
	return px
}
