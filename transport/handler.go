// Package transport serves the SockJS protocol over HTTP under a URL
// prefix: one file per transport, the frame encoding, CORS and cookie
// helpers, and the route table in this file.
package transport

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/fallback"
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

	// ResponseLimit is the number of bytes a streaming response carries
	// before the server ends it so that the client reconnects and frees
	// what it buffered. Default 128 KiB.
	ResponseLimit int

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
	// must be the client version the application's pages use. Default
	// DefaultSockJSURL.
	SockJSURL string

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

	// Logger receives one line per rejected request or failed session.
	// Default slog.Default().
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultResponseLimit   = 128 << 10
	DefaultMaxMessageBytes = 1 << 20
	DefaultWriteTimeout    = 10 * time.Second
	DefaultCloseWait       = time.Second
	// DefaultSockJSURL is the client the iframe page loads when the
	// application does not serve its own copy. cmd/server serves the
	// pinned npm copy instead, so that closed networks work.
	DefaultSockJSURL = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"
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
	if o.SockJSURL == "" {
		o.SockJSURL = DefaultSockJSURL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Handler serves one SockJS service under a prefix.
type Handler struct {
	prefix   string
	opts     Options
	policy   fallback.Policy
	origins  originList
	reg      *session.Registry
	app      func(*session.Session)
	obs      session.Observer
	iframe   *fallback.IframePage
	upgrader websocket.Upgrader
	log      *slog.Logger

	closing atomic.Bool
	active  atomic.Int64 // receiving connections, for Shutdown
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
		reg:     session.NewRegistry(opts.Session, opts.MaxSessions),
		app:     app,
		obs:     opts.Session.Observer,
		iframe:  fallback.NewIframePage(opts.SockJSURL),
		log:     opts.Logger,
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

// Registry gives access to the service's live sessions.
func (h *Handler) Registry() *session.Registry { return h.reg }

// Policy is the set of transports this service offers.
func (h *Handler) Policy() fallback.Policy { return h.policy }

// Prefix is the URL prefix the service is served under.
func (h *Handler) Prefix() string { return h.prefix }

// Mount registers the service on a gorilla/mux router. The protocol's URLs
// include ones like "<prefix>//" that must answer 404, so the router should
// have SkipClean(true); otherwise mux redirects them.
func (h *Handler) Mount(r *mux.Router) {
	r.Path(h.prefix).Handler(h)
	r.PathPrefix(h.prefix + "/").Handler(h)
}

// Shutdown closes every session with c[1001,"Going away"] (a close frame
// with code 1001 on raw websockets) and waits, until ctx is done, for the
// close frames to be written to connected clients. New sessions are
// refused from the moment it is called.
func (h *Handler) Shutdown(ctxDone <-chan struct{}) error {
	h.closing.Store(true)
	h.reg.CloseAll(session.CodeGoingAway, session.ReasonGoingAway)
	// Receivers end as soon as their close frame is written; poll for
	// that instead of a WaitGroup, which may not be added to while
	// waited on (new requests still arrive during shutdown).
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for h.active.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctxDone:
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
	parts := strings.Split(path, "/")
	if len(parts) != 4 || !validID(parts[1]) || !validID(parts[2]) {
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
	h.observed(w, r, endpoints[endpoint], func(w http.ResponseWriter, r *http.Request) { h.route(w, r, sid, endpoint) })
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
// one or one with a dot.
func validID(s string) bool {
	return s != "" && !strings.Contains(s, ".")
}

func (h *Handler) greeting(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, "GET", "HEAD") {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
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
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(fallback.Info(h.policy))
}

// plainError answers status with a short text body that says what is
// wrong.
func plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
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
func (h *Handler) sessionFor(w http.ResponseWriter, r *http.Request, sid string, t session.Transport) *session.Session {
	if h.closing.Load() {
		if s := h.reg.Get(sid); s != nil {
			return s
		}
		plainError(w, http.StatusServiceUnavailable, "Server is shutting down")
		return nil
	}
	s, created, err := h.reg.GetOrCreate(sid, t, func() session.Request { return h.requestInfo(r) })
	if err != nil {
		h.log.Warn("sockjs: session refused", "prefix", h.prefix, "transport", t.String(), "err", err)
		plainError(w, http.StatusServiceUnavailable, "Too many sessions")
		return nil
	}
	if created {
		go h.run(s)
	}
	return s
}

// run is the goroutine of a session's application handler. A panic in it
// is logged and closes that session only.
func (h *Handler) run(s *session.Session) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("sockjs: session handler panicked", "prefix", h.prefix, "session", s.ID(), "panic", p, "stack", string(debug.Stack()))
		}
		_ = s.Close(session.CodeGoAway, session.ReasonGoAway)
	}()
	h.app(s)
}

func (h *Handler) requestInfo(r *http.Request) session.Request {
	hdr := r.Header.Clone()
	if !h.opts.ExposeCookies {
		hdr.Del("Cookie")
	}
	return session.Request{
		Header:     hdr,
		Query:      r.URL.Query(),
		RemoteAddr: r.RemoteAddr,
		Host:       r.Host,
		Path:       r.URL.Path,
	}
}
