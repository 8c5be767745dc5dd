package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/fallback"
	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// Options configure a SockJS service. Zero values mean the documented
// defaults.
type Options struct {
	// Session bounds each session's queues and sets its timers
	// (heartbeat 25s, disconnect delay 5s; see session.Options).
	Session session.Options

	// MaxSessions bounds the live sessions of this service; past it new
	// sessions get 503 (HTTP) or close 1013 (websocket). Default 100,000.
	MaxSessions int

	// DisableWebSocket turns the websocket transports off and tells
	// clients so in /info.
	DisableWebSocket bool
	// DisableRawWebSocket turns off <prefix>/websocket only.
	DisableRawWebSocket bool
	// ReaderGoroutines keeps a goroutine reading every websocket
	// connection, and watching every taken-over streaming answer's
	// connection for the client leaving. Default false: on a plain TCP
	// connection they wait in the kernel's poller (epoll) while the
	// client sends nothing, with no goroutine and no read buffer, which
	// is about 40 % of what an idle websocket session costs otherwise.
	// TLS, PROXY-protocol and Hixie-76 connections, and every one where
	// there is no epoll (not Linux), keep their goroutine either way.
	ReaderGoroutines bool

	// ResponseLimit is the number of bytes a streaming response carries
	// before the server ends it so that the client reconnects and frees
	// what it buffered. Default 128 KiB.
	ResponseLimit int

	// NoHijack keeps streaming answers (xhr-streaming, eventsource,
	// htmlfile) with net/http instead of taking over their HTTP/1.1
	// connection: for middleware that must see the whole answer. It
	// costs about 20 KB more per idle streaming session. Default false.
	NoHijack bool

	// MaxMessageBytes bounds one message from the client: a websocket
	// message (close 1009 past it) and an xhr_send/jsonp_send body (413
	// past it). Default 1 MiB.
	MaxMessageBytes int

	// WriteTimeout bounds one write to a client; a client that takes
	// longer to read a frame is disconnected. Default 10s.
	WriteTimeout time.Duration

	// CloseWait bounds how long a websocket connection stays open after
	// the server's close frame, waiting for the client's: closing at once
	// would make the client's answer meet a reset, which clients report
	// as an error instead of a clean close. Default 1s.
	CloseWait time.Duration

	// CookieNeeded sets a JSESSIONID cookie on session requests (for load
	// balancers that need it for sticky sessions) and says so in /info.
	CookieNeeded bool

	// SockJSURL is the sockjs-client script the iframe page loads. It
	// must be the client version the application's pages use. Default:
	// <prefix>/sockjs.min.js when ClientScript is set (the protocol's
	// exact page), else DefaultSockJSURL with DefaultSockJSIntegrity.
	SockJSURL string
	// SockJSIntegrity is the Subresource Integrity hash ("sha384-...")
	// of SockJSURL, put on the iframe page's script tag with
	// crossorigin="anonymous". Empty: none, and the page is the
	// protocol's byte for byte; with a hash the official suite's
	// IframePage body checks fail by design.
	SockJSIntegrity string
	// ClientScript is a copy of sockjs-client's dist/sockjs.min.js that
	// the service serves itself at <prefix>/sockjs.min.js, so that the
	// iframe transports need no CDN. The iframe page loads it without an
	// integrity hash: it comes from the same server as the page. Default
	// none.
	ClientScript []byte

	// PingInterval, when set, pings every session (not raw websockets)
	// at this interval, the first time as soon as it opens; sockjsd.js
	// answers without passing the ping to the page and the round trip
	// goes to Session.Observer if it implements RTTObserver. Only for
	// services whose pages use sockjsd.js (see ping.go). Default off.
	PingInterval time.Duration

	// AllowedOrigins, when not empty, is the list of origins allowed to
	// open sessions and to read CORS responses: exact origins
	// ("https://app.example.com"), host wildcards
	// ("https://*.example.com") or "*". When empty every origin is
	// allowed, as the protocol requires.
	AllowedOrigins []string
	// AllowIframeTransports keeps htmlfile, jsonp and the iframe page
	// on when AllowedOrigins is set. Those transports carry no
	// trustworthy Origin, so they are off by default under an allowlist.
	AllowIframeTransports bool

	// ExposeCookies keeps the Cookie header in session.Request. Off by
	// default: cookie authentication over iframe transports is a CSRF
	// hole; pass a token in the query string or the first message.
	ExposeCookies bool

	// Cluster turns on cluster mode: sessions served by any node behind
	// a balancer without sticky sessions (cluster.New is the Redis one).
	// Default nil: one node.
	Cluster Cluster

	// Logger receives one line per rejected request or failed session.
	// Default slog.Default().
	Logger *slog.Logger

	// MaxIDBytes bounds the server and session ids in a session URL;
	// longer ones get 404. Default 64 (DefaultMaxIDBytes).
	MaxIDBytes int

	// KeepHeaders are the request headers a session keeps in
	// session.Request; the others are dropped once the session is
	// created. nil means DefaultKeepHeaders(). Cookie is kept only with
	// ExposeCookies.
	KeepHeaders []string
	// MaxRequestInfoBytes bounds what a session keeps of its opening
	// request: the kept headers, the query, path and addresses. A new
	// session over it is refused with 431. Default 8 KiB.
	MaxRequestInfoBytes int

	// MaxConcurrentSends bounds the xhr_send and jsonp_send requests in
	// flight for one session; past it they get 429. sockjs-client sends
	// one at a time. Default 4.
	MaxConcurrentSends int
	// BodyBudget bounds the bytes of send bodies held at once by the
	// services sharing it; a body that does not fit waits, until
	// BodyReadTimeout, then gets 503. nil: each service gets its own
	// budget of DefaultBodyBudgetBytes (64 MiB).
	BodyBudget *BodyBudget
	// BodyReadTimeout bounds waiting for the budget plus reading a send
	// body; a slower body gets 408 and its connection is closed.
	// Default 10s.
	BodyReadTimeout time.Duration

	// MessageBudget bounds the bytes of websocket (and Hixie) messages
	// past their first 1 KiB held at once by the services sharing it,
	// while they are read and until their messages are queued; a message
	// that cannot grow waits, until its MessageReadTimeout, then its
	// connection is closed with 1013. A budget of its own, not
	// BodyBudget, so that neither kind of flood starves the other (see
	// message.go). Keep it at least MaxMessageBytes: a larger message
	// could never complete. nil: each service gets its own budget of
	// DefaultMessageBudgetBytes (16 MiB).
	MessageBudget *BodyBudget
	// MessageReadTimeout bounds a websocket message from its first byte
	// to its last (waiting for MessageBudget included); a slower one
	// closes its connection with 1008. Idle connections between
	// messages are not affected. Default 10s.
	MessageReadTimeout time.Duration
	// HandOff, in cluster mode, moves the service's HTTP sessions to
	// another node when this one drains (Handler.HandOff) instead of
	// closing them: see the HandOff interface. Default nil: sessions end
	// with 1001 at Shutdown.
	HandOff HandOff
	// MaxHandOffBytes bounds one session's hand-off record: its queued
	// messages both ways and the application's state. A session over it
	// is closed with 1001 instead (LimitHandOff). Default
	// DefaultMaxHandOffBytes (6 MiB).
	MaxHandOffBytes int
}

// Defaults for Options.
const (
	DefaultResponseLimit   = 128 << 10
	DefaultMaxMessageBytes = 1 << 20
	DefaultWriteTimeout    = 10 * time.Second
	DefaultCloseWait       = time.Second
	// DefaultMaxSessions (100,000) bounds a service's live sessions when
	// MaxSessions is zero; the registry applies it.
	DefaultMaxSessions = engine.DefaultMaxSessions
)

func (o Options) withDefaults() Options {
	o.Session = o.Session.WithDefaults()
	if o.ResponseLimit <= 0 {
		o.ResponseLimit = DefaultResponseLimit
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.CloseWait <= 0 {
		o.CloseWait = DefaultCloseWait
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxHandOffBytes <= 0 {
		o.MaxHandOffBytes = DefaultMaxHandOffBytes
	}
	o.limitDefaults()   // limits.go
	o.bodyDefaults()    // body.go
	o.messageDefaults() // message.go
	return o
}

// Handler serves one SockJS service under a prefix.
type Handler struct {
	prefix   string
	opts     Options
	policy   fallback.Policy
	origins  originList
	reg      *engine.Registry
	app      func(*session.Session)
	obs      session.Observer
	iframe   *fallback.IframePage
	client   *clientScript        // nil: no ClientScript
	pingers  sync.Map             // *engine.Session -> *pinger, with PingInterval
	wsRTT    WebSocketRTTObserver // obs, when it takes websocket round trips (wsping.go)
	upgrader websocket.Upgrader
	parkWS   bool // park idle websockets in the poller (wspoll.go)
	log      *slog.Logger

	// rttService is the service's name in round-trip observations: the
	// prefix without its slash.
	rttService string

	keep   []string    // canonical KeepHeaders (reqinfo.go)
	msgs   *msgWatcher // payload deadlines (msgwatch.go)
	limits limitLog    // limits.go

	closing atomic.Bool
	active  atomic.Int64  // receiving connections, for Shutdown
	cluster ClusterMember // nil on a single node
}

// New returns a Handler serving the SockJS service at prefix (for example
// "/echo"; no trailing slash). app runs on its own goroutine for every new
// session; when it returns, the session is closed with c[3000,"Go away!"]
// if it is still open, so a handler that wants to keep the session must
// block (typically in a Recv loop).
func New(prefix string, opts Options, app func(*session.Session)) *Handler {
	opts = opts.withDefaults()
	h := &Handler{
		prefix:  strings.TrimSuffix(prefix, "/"),
		opts:    opts,
		origins: newOriginList(opts.AllowedOrigins),
		reg:     engine.NewRegistry(engineOptions(opts.Session), opts.MaxSessions),
		app:     app,
		obs:     opts.Session.Observer,
		iframe:  iframePage(strings.TrimSuffix(prefix, "/"), opts),
		client:  newClientScript(opts.ClientScript),
		log:     opts.Logger,
		keep:    keepList(opts),
		msgs:    newMsgWatcher(opts.MessageReadTimeout),
	}
	h.wsRTT, _ = h.obs.(WebSocketRTTObserver)
	h.rttService = strings.TrimPrefix(h.prefix, "/")
	h.parkWS = !opts.ReaderGoroutines && pollerWorks()
	if opts.Cluster != nil {
		h.cluster = opts.Cluster.Join(clusterService{h})
	}
	h.policy = fallback.Policy{
		WebSocket:        !opts.DisableWebSocket,
		RawWebSocket:     !opts.DisableWebSocket && !opts.DisableRawWebSocket,
		IframeTransports: h.origins.any || opts.AllowIframeTransports,
		CookieNeeded:     opts.CookieNeeded,
	}
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		// Write buffers are only held while a write is in progress, so
		// an idle websocket session costs no write buffer.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     h.checkWebSocketOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			h.log.Info("sockjs: websocket upgrade refused", "path", r.URL.Path, "status", status, "err", reason)
			plainError(w, status, reason.Error())
		},
	}
	return h
}

// Sessions is the number of the service's live sessions.
func (h *Handler) Sessions() int { return h.reg.Len() }

// Range calls fn for every live session of the service, for an
// application that must reach them all (to close them, say). fn runs
// without the registry's locks held, so it may call any Session method.
func (h *Handler) Range(fn func(*session.Session)) {
	h.reg.Range(func(s *engine.Session) { fn((*session.Session)(s)) })
}

// Policy is the set of transports this service offers.
func (h *Handler) Policy() fallback.Policy { return h.policy }

// Prefix is the URL prefix the service is served under.
func (h *Handler) Prefix() string { return h.prefix }

// Shutdown closes every session with c[1001,"Going away"] (a close frame
// with code 1001 on raw websockets) and waits, until ctx is done, for the
// close frames to be written to connected clients. New sessions are
// refused from the moment it is called. In cluster mode the service then
// leaves the cluster, releasing its sessions' records.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	if h.cluster != nil {
		defer func() {
			if err := h.cluster.Leave(ctx); err != nil {
				h.log.Warn("sockjs: leaving the cluster", "prefix", h.prefix, "err", err)
			}
		}()
	}
	if cr, ok := h.cluster.(ClusterRelays); ok {
		// The receives this node relays to other nodes end normally
		// while the sessions of this one close.
		relayed := make(chan struct{})
		go func() { defer close(relayed); cr.EndRelays(ctx) }()
		defer func() { <-relayed }()
	}
	h.reg.CloseAll(session.CodeGoingAway, session.ReasonGoingAway)
	// Receivers end as soon as their close frame is written; poll for
	// that instead of a WaitGroup, which may not be added to while
	// waited on (new requests still arrive during shutdown).
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for h.active.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("sockjs %s: shutdown: %d connections still open", h.prefix, h.active.Load())
		}
	}
	return nil
}

// ServeHTTP routes a request under the prefix: the route table of the
// protocol.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok {
		notFound(w)
		return
	}
	switch {
	case path == "" || path == "/":
		h.greeting(w, r)
		return
	case path == "/info":
		h.info(w, r)
		return
	case path == "/websocket":
		if !h.policy.RawWebSocket {
			notFound(w)
			return
		}
		h.rawWebSocket(w, r)
		return
	case path == ClientScriptPath && h.client != nil:
		if !allowMethods(w, r, "GET", "HEAD") {
			return
		}
		h.client.ServeHTTP(w, r)
		return
	case strings.HasPrefix(path, "/iframe"):
		if !fallback.IsIframePath(path) || !h.policy.IframeTransports {
			notFound(w)
			return
		}
		if !allowMethods(w, r, "GET", "HEAD") {
			return
		}
		h.iframe.Serve(w, r)
		return
	}
	// /<server>/<session>/<transport>
	parts, four := splitPath4(path)
	if !four || !h.validID(parts[1]) || !h.validID(parts[2]) {
		if four && max(len(parts[1]), len(parts[2])) > h.opts.MaxIDBytes {
			h.limitHit(session.NumTransports, session.LimitIDLength)
		}
		notFound(w)
		return
	}
	sid, endpoint := parts[2], parts[3]
	if !h.policy.Offers(endpoint) {
		notFound(w)
		return
	}
	if endpoint == "websocket" {
		h.webSocket(w, r) // hijacked: gorilla needs the bare ResponseWriter
		return
	}
	if h.cluster != nil && h.cluster.Route(w, r, sid, endpoint) {
		return // forwarded to the session's owner
	}
	h.observed(w, r, endpoints[endpoint], sid, endpoint)
}

// splitPath4 is strings.Split(p, "/") when that has four parts, without
// allocating them (one allocation per request).
func splitPath4(p string) (parts [4]string, ok bool) {
	for i := range 3 {
		var found bool
		parts[i], p, found = strings.Cut(p, "/")
		if !found {
			return parts, false
		}
	}
	parts[3] = p
	return parts, !strings.Contains(p, "/")
}

// route dispatches an HTTP session endpoint.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, sid, endpoint string) {
	switch endpoint {
	case "xhr":
		h.xhrPolling(w, r, sid)
	case "xhr_streaming":
		h.xhrStreaming(w, r, sid)
	case "xhr_send":
		h.xhrSend(w, r, sid)
	case "eventsource":
		h.eventSource(w, r, sid)
	case "htmlfile":
		h.htmlFile(w, r, sid)
	case "jsonp":
		h.jsonp(w, r, sid)
	case "jsonp_send":
		h.jsonpSend(w, r, sid)
	default:
		notFound(w)
	}
}

// validID: the protocol accepts any server and session id except an empty
// one or one with a dot; ours are also bounded in length, since a session
// keeps its id for its lifetime.
func (h *Handler) validID(s string) bool {
	return s != "" && len(s) <= h.opts.MaxIDBytes && !strings.Contains(s, ".")
}

func (h *Handler) greeting(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, "GET", "HEAD") {
		return
	}
	setHeader(w.Header(), "Content-Type", hdrTextPlain)
	_, _ = w.Write([]byte("Welcome to SockJS!\n"))
}

func (h *Handler) info(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		h.preflight(w, r, "OPTIONS, GET")
		return
	}
	if !allowMethods(w, r, "GET", "OPTIONS") {
		return
	}
	if !h.cors(w, r) {
		return
	}
	noCache(w)
	setHeader(w.Header(), "Content-Type", hdrJSON)
	_, _ = w.Write(fallback.Info(h.policy))
}

// plainError answers status with a short text body that says what is
// wrong.
func plainError(w http.ResponseWriter, status int, msg string) {
	setHeader(w.Header(), "Content-Type", hdrTextPlain)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

func notFound(w http.ResponseWriter) {
	plainError(w, http.StatusNotFound, "404 Error: Page not found\n")
}

// allowMethods answers 405 with an Allow header (and no body or content
// type, as the protocol asks) when r's method is not one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	w.WriteHeader(http.StatusMethodNotAllowed)
	return false
}

// sessionFor returns the session with URL id sid, creating it (and starting
// the application's handler) when a receiving request comes for an
// unknown id. It answers 503 and returns nil past the session limit.
func (h *Handler) sessionFor(w http.ResponseWriter, r *http.Request, sid string, t session.Transport) *engine.Session {
	if h.closing.Load() {
		if s := h.reg.Get(sid); s != nil {
			return s
		}
		plainError(w, http.StatusServiceUnavailable, "Server is shutting down")
		return nil
	}
	if s := h.reg.Get(sid); s != nil {
		return s // one lookup on every poll, not two
	}
	if h.refuseRequestInfo(w, r, t) {
		return nil
	}
	s, created, err := h.reg.GetOrCreate(sid, t, func() engine.Request { return h.requestInfo(r) })
	if err != nil {
		h.limitHit(t, session.LimitSessions)
		plainError(w, http.StatusServiceUnavailable, "Too many sessions")
		return nil
	}
	if created {
		if h.cluster != nil {
			h.cluster.Opened(sid, (*session.Session)(s))
		}
		go h.run(s)
	}
	return s
}

// run is the goroutine of a session's application handler. A panic in it
// is logged and closes that session only.
func (h *Handler) run(s *engine.Session) {
	defer func() {
		p := recover()
		if p != nil {
			h.log.Error("sockjs: session handler panicked", "prefix", h.prefix, "session", s.ID(), "panic", p, "stack", string(debug.Stack()))
		}
		// A handler that set OnMessage has handed the session to its
		// callback: the session outlives it.
		if p != nil || !s.HasOnMessage() {
			_ = s.Close(session.CodeGoAway, session.ReasonGoAway)
		}
	}()
	h.startPing(s)
	// The application gets the face of the engine's session: the same
	// pointer under a type that exports only the application API.
	h.app((*session.Session)(s))
}

// delivered logs, once, an OnMessage callback's panic that delivering a
// message met (the session closed itself); other errors mean the session
// was closed or the request ended, which the caller handles.
func (h *Handler) delivered(s *engine.Session, err error) {
	if err == nil {
		return // before pe: its address escapes, it would cost an allocation per message
	}
	var pe *engine.PanicError
	if errors.As(err, &pe) {
		h.log.Error("sockjs: OnMessage callback panicked", "prefix", h.prefix, "session", s.ID(), "panic", pe.Value, "stack", string(pe.Stack))
	}
}

// engineOptions is the engine's copy of o. The engine cannot import
// package session (session is the face over it), so it has its own
// Options with the same fields; TestMirrorTypes and TestMirrorDefaults
// keep the two in step.
func engineOptions(o session.Options) engine.Options {
	return engine.Options{
		HeartbeatDelay:    o.HeartbeatDelay,
		DisconnectDelay:   o.DisconnectDelay,
		SendQueueMessages: o.SendQueueMessages,
		SendQueueBytes:    o.SendQueueBytes,
		RecvQueueMessages: o.RecvQueueMessages,
		RecvQueueBytes:    o.RecvQueueBytes,
		ReceiverWait:      o.ReceiverWait,
		Observer:          o.Observer,
	}
}
