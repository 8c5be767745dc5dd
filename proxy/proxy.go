package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/internal/backend"
	"github.com/sockjsd/sockjsd/session"
)

// Close codes of the sessions the gateway closes itself: 3000 plus the
// HTTP status of the same meaning. A backend's own codes are 4000-4999.
const (
	CodeBacklog        = 3429 // the client sent more than MaxPendingBytes while the backend had not answered
	CodeBackendFailed  = 3502 // the backend refused the connection, answered an error status or not the contract's JSON
	CodeBackendTimeout = 3504 // the backend did not answer within Timeout, or MaxInFlight requests were waiting already

	ReasonBacklog        = "Too many messages waiting for the backend"
	ReasonBackendFailed  = "Backend unavailable"
	ReasonBackendTimeout = "Backend timeout"
)

// Defaults of Options.
const (
	DefaultTimeout         = backend.DefaultTimeout
	DefaultMaxInFlight     = backend.DefaultMaxInFlight
	DefaultMaxAnswerBytes  = backend.DefaultMaxAnswerBytes
	DefaultMaxBatchBytes   = 256 << 10
	DefaultMaxPendingBytes = 1 << 20
	// MaxReasonBytes bounds a close reason a backend gives; longer ones
	// are cut (at a rune boundary).
	MaxReasonBytes = 256
)

// DefaultHeaders are the request headers a connect carries by default.
// Cookie and Authorization are not among them: a backend that
// authenticates with them names them in Options.Headers.
var DefaultHeaders = []string{"Origin", "User-Agent", "Accept-Language", "Referer", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip"}

// Options configure a Gateway. Zero values mean the documented defaults.
type Options struct {
	// Secret signs every request to a backend (X-Sockjsd-Signature, see
	// internal/sign and docs/proxy.md). Required.
	Secret []byte
	// Timeout bounds one request to a backend, from the wait for a slot
	// to the last byte of its answer. Default 10s.
	Timeout time.Duration
	// MaxInFlight bounds the requests in flight to one backend. A request
	// waits for a slot within its Timeout. Default 512.
	MaxInFlight int
	// MaxAnswerBytes bounds one answer from a backend; a larger one is a
	// backend failure. Default 1 MiB.
	MaxAnswerBytes int64
	// MaxBatchBytes bounds the messages of one POST /message; what does
	// not fit goes in the next. Default 256 KiB.
	MaxBatchBytes int
	// MaxPendingBytes bounds the messages of one session waiting for the
	// backend (received during a connect or a message request in
	// flight). Past it the session is closed with CodeBacklog. Default
	// 1 MiB.
	MaxPendingBytes int
	// Headers are the request headers a connect carries (the first value
	// of each). Default DefaultHeaders.
	Headers []string
	// Node names this node in connects and in the directory: the
	// cluster's advertised URL, or empty on one node.
	Node string
	// Directory records where each session lives, for the server API and
	// webhooks across nodes. Default: none (the API reaches this node's
	// sessions only, and no lifecycle event is sent).
	Directory Directory
	// Attach subscribes a session to hub channels (a connect's channels,
	// a message answer's subscribe). Default: none; channels in an
	// answer are then refused with a log line.
	Attach func(*session.Session) Subscriber
	// Transport carries the requests to backends. Default: a pooled
	// transport per backend.
	Transport http.RoundTripper
	Observer  Observer
	Logger    *slog.Logger
}

// Subscriber is a session's hub membership (hub.Member).
type Subscriber interface {
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(channel string) error
}

// Directory is where the gateway records its sessions (package directory
// implements it in memory and on Redis).
type Directory interface {
	Add(ctx context.Context, e directory.Entry) error
	Remove(ctx context.Context, id string, code int, reason string) error
	Lookup(ctx context.Context, id string) (directory.Entry, bool, error)
	ByUser(ctx context.Context, user string) ([]directory.Entry, error)
}

// Observer receives the gateway's calls to backends, for metrics.
type Observer interface {
	// BackendCall is one request: hook is "connect", "message" or
	// "close", outcome a backend.Outcome.
	BackendCall(service, hook string, outcome string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) BackendCall(string, string, string, time.Duration) {}

func (o Options) withDefaults() Options {
	o.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	o.MaxInFlight = cmp.Or(o.MaxInFlight, DefaultMaxInFlight)
	o.MaxAnswerBytes = cmp.Or(o.MaxAnswerBytes, DefaultMaxAnswerBytes)
	o.MaxBatchBytes = cmp.Or(o.MaxBatchBytes, DefaultMaxBatchBytes)
	o.MaxPendingBytes = cmp.Or(o.MaxPendingBytes, DefaultMaxPendingBytes)
	if o.Headers == nil {
		o.Headers = DefaultHeaders
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Gateway drives SockJS sessions from HTTP backends: each proxied service
// (Service) calls its backend's connect, message and close, and the
// server API (NewAPI) lets any backend reach any session.
type Gateway struct {
	opts  Options
	local registry

	mu       sync.Mutex
	clients  []*backend.Client
	services map[string]*service // by prefix, for HandOff
	// running counts the sessions' request goroutines, so that Shutdown
	// can wait for the close requests. Not a WaitGroup: sessions end (and
	// start one) while Shutdown waits.
	running int
	idle    chan struct{} // closed when running is 0; nil while it is
}

func (g *Gateway) started() {
	g.mu.Lock()
	if g.running == 0 {
		g.idle = make(chan struct{})
	}
	g.running++
	g.mu.Unlock()
}

func (g *Gateway) done() {
	g.mu.Lock()
	if g.running--; g.running == 0 {
		close(g.idle)
	}
	g.mu.Unlock()
}

// New returns a Gateway.
func New(opts Options) (*Gateway, error) {
	if len(opts.Secret) == 0 {
		return nil, errors.New("proxy: a secret is required to sign requests to backends")
	}
	return &Gateway{opts: opts.withDefaults(), local: newRegistry()}, nil
}

// Service returns the session handler of a service at prefix whose
// backend is at base (POST base+"/connect", "/message", "/close"): mount
// it with transport.New(prefix, opts, handler).
func (g *Gateway) Service(prefix, base string) (func(*session.Session), error) {
	c, err := backend.New(backend.Options{
		URL:            base,
		Secret:         g.opts.Secret,
		Timeout:        g.opts.Timeout,
		MaxInFlight:    g.opts.MaxInFlight,
		MaxAnswerBytes: g.opts.MaxAnswerBytes,
		Transport:      g.opts.Transport,
		Header:         http.Header{"User-Agent": {"sockjsd-proxy"}},
	})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", prefix, err)
	}
	g.mu.Lock()
	g.clients = append(g.clients, c)
	g.mu.Unlock()
	svc := &service{g: g, prefix: prefix, backend: c, logged: map[string]*logState{}, conns: map[*session.Session]*conn{}}
	g.mu.Lock()
	if g.services == nil {
		g.services = map[string]*service{}
	}
	g.services[prefix] = svc
	g.mu.Unlock()
	return svc.serve, nil
}

// Shutdown waits, bounded by ctx, for the close requests of sessions that
// already ended, then releases the backends' idle connections. Close the
// sessions first (transport.Handler.Shutdown).
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	idle, busy := g.idle, g.running > 0
	g.mu.Unlock()
	var err error
	if busy {
		select {
		case <-idle:
		case <-ctx.Done():
			err = fmt.Errorf("proxy: close requests still in flight: %w", ctx.Err())
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.clients {
		c.Close()
	}
	return err
}

// service is one proxied service.
type service struct {
	g       *Gateway
	prefix  string
	backend *backend.Client

	logMu  sync.Mutex
	logged map[string]*logState // by message: a fixed set of constants

	// conns are the service's sessions from their start (before the
	// connect registers them for the API) to their end, for Export.
	connsMu sync.Mutex
	conns   map[*session.Session]*conn
}

func (svc *service) track(s *session.Session, c *conn) {
	svc.connsMu.Lock()
	svc.conns[s] = c
	svc.connsMu.Unlock()
}

func (svc *service) untrack(s *session.Session) {
	svc.connsMu.Lock()
	delete(svc.conns, s)
	svc.connsMu.Unlock()
}

func (svc *service) conn(s *session.Session) *conn {
	svc.connsMu.Lock()
	defer svc.connsMu.Unlock()
	return svc.conns[s]
}

type logState struct {
	last    time.Time
	skipped int
}

// warn logs a problem of the service's backend or directory at most once
// a second per message, with how many like it went unlogged since: a
// backend that goes down fails every session at once, and that is one
// line a second, not one per session.
func (svc *service) warn(msg string, attrs ...any) {
	now := time.Now()
	svc.logMu.Lock()
	st := svc.logged[msg]
	if st == nil {
		st = &logState{}
		svc.logged[msg] = st
	}
	if now.Sub(st.last) < time.Second {
		st.skipped++
		svc.logMu.Unlock()
		return
	}
	skipped := st.skipped
	st.last, st.skipped = now, 0
	svc.logMu.Unlock()
	attrs = append([]any{"service", svc.prefix}, attrs...)
	if skipped > 0 {
		attrs = append(attrs, "more_since_last_line", skipped)
	}
	svc.g.opts.Logger.Warn(msg, attrs...)
}

// call is one request to the backend, observed.
func (svc *service) call(ctx context.Context, hook string, req, answer any) error {
	start := time.Now()
	err := svc.backend.Call(ctx, "/"+hook, req, answer)
	svc.g.opts.Observer.BackendCall(svc.prefix, hook, string(backend.OutcomeOf(err)), time.Since(start))
	return err
}

// remoteHost is the client's address without its port.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// failure is the close code and reason of a failed call.
func failure(err error) (int, string) {
	switch backend.OutcomeOf(err) {
	case backend.Timeout, backend.Busy:
		return CodeBackendTimeout, ReasonBackendTimeout
	default:
		return CodeBackendFailed, ReasonBackendFailed
	}
}

// validCode: a backend closes with 4000-4999, the range the WebSocket
// spec leaves to applications.
func validCode(c int) bool { return c >= 4000 && c <= 4999 }

// cutReason bounds a backend's reason to MaxReasonBytes.
func cutReason(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	s = s[:MaxReasonBytes]
	return strings.ToValidUTF8(s, "")
}
