package session

import (
	"net/http"
	"net/url"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
)

// The enums below are defined by the engine, which needs them and cannot
// import this package (this package imports it), and aliased here: a
// session.Transport is an engine.Transport, so observers, metrics and the
// transports all speak of one type. Their constants are re-declared so
// that they are documented where applications read them.

// Transport names the connection kind a session was opened with. It is a
// small integer so that observers can index arrays instead of hashing
// strings on the hot path. Its String values are the names sockjs-client
// uses, and the only values metrics labels ever take.
type Transport = engine.Transport

// The transports of SockJS 0.3.3.
const (
	WebSocket     = engine.WebSocket
	RawWebSocket  = engine.RawWebSocket
	XHRStreaming  = engine.XHRStreaming
	XHRPolling    = engine.XHRPolling
	EventSource   = engine.EventSource
	HTMLFile      = engine.HTMLFile
	JSONPPolling  = engine.JSONPPolling
	NumTransports = engine.NumTransports // number of transports, for arrays indexed by Transport
)

// CloseCause classifies why a session ended, for metrics (the reason
// label of sockjs_sessions_closed_total). It is not the close frame's
// reason text, which the Reason* constants name.
type CloseCause = engine.CloseCause

// Causes of a session's end.
const (
	CauseClient   = engine.CauseClient   // the client closed (websocket close, or went away cleanly)
	CauseServer   = engine.CauseServer   // the application called Close, or its handler returned
	CauseTimeout  = engine.CauseTimeout  // no receiving connection within DisconnectDelay
	CauseLimit    = engine.CauseLimit    // a queue, message or body limit was exceeded
	CauseError    = engine.CauseError    // a network or protocol error interrupted the session
	CauseShutdown = engine.CauseShutdown // the server is shutting down
	NumCauses     = engine.NumCauses
)

// FrameKind is the first byte of a SockJS frame, for Observer.FrameWritten.
type FrameKind = engine.FrameKind

// Frame kinds of the SockJS protocol.
const (
	FrameOpen      = engine.FrameOpen
	FrameHeartbeat = engine.FrameHeartbeat
	FrameMessages  = engine.FrameMessages
	FrameClose     = engine.FrameClose
)

// Endpoint is the last element of a session URL, for Observer.HTTPRequest.
type Endpoint = engine.Endpoint

// Session endpoints.
const (
	EndpointXHR          = engine.EndpointXHR
	EndpointXHRSend      = engine.EndpointXHRSend
	EndpointXHRStreaming = engine.EndpointXHRStreaming
	EndpointEventSource  = engine.EndpointEventSource
	EndpointHTMLFile     = engine.EndpointHTMLFile
	EndpointJSONP        = engine.EndpointJSONP
	EndpointJSONPSend    = engine.EndpointJSONPSend
	NumEndpoints         = engine.NumEndpoints
)

// Limit names a limit that refused something a client sent or asked for,
// for Observer.LimitHit. A small integer with a fixed set of names, so
// metrics labels stay bounded.
type Limit = engine.Limit

// The limits the session and transport packages enforce.
const (
	LimitIDLength           = engine.LimitIDLength           // a server or session id in the URL too long (404)
	LimitRequestInfo        = engine.LimitRequestInfo        // headers and query a new session would keep over the cap (431)
	LimitSessions           = engine.LimitSessions           // the service's session limit (503 / close 1013)
	LimitBodySize           = engine.LimitBodySize           // a send body over the message limit (413)
	LimitMessageSize        = engine.LimitMessageSize        // a websocket message over the message limit (close 1009)
	LimitConcurrentSends    = engine.LimitConcurrentSends    // too many send requests in flight for one session (429)
	LimitBodyBudget         = engine.LimitBodyBudget         // the service's budget of body bytes being read was exhausted (503)
	LimitBodyReadTimeout    = engine.LimitBodyReadTimeout    // a send body not read in time (408)
	LimitSendQueue          = engine.LimitSendQueue          // the send queue overflowed (close 3009)
	LimitMessageBudget      = engine.LimitMessageBudget      // the budget of websocket message bytes being read stayed exhausted (close 1013)
	LimitMessageReadTimeout = engine.LimitMessageReadTimeout // a websocket message not received in time once begun (close 1008)
	LimitHandOff            = engine.LimitHandOff            // a session's hand-off record over its byte limit (closed with 1001 at the drain)
	NumLimits               = engine.NumLimits
)

// Close codes and reasons used by the protocol and by this server, as
// CloseInfo reports them. Codes 3000-3999 are reserved for libraries like
// this one, 4000-4999 for applications. The values are the engine's; the
// comments say them (TestConstantComments keeps them true).
const (
	CodeGoingAway   = engine.CodeGoingAway   // 1001: server shutdown
	CodeInterrupted = engine.CodeInterrupted // 1002: the receiving connection broke
	CodeTooBig      = engine.CodeTooBig      // 1009: a message over the size limit
	CodeAnotherConn = engine.CodeAnotherConn // 2010: a second receiver for one session
	CodeGoAway      = engine.CodeGoAway      // 3000: the application closed the session
	CodeQueueFull   = engine.CodeQueueFull   // 3009: the client did not read fast enough
	ReasonGoingAway = engine.ReasonGoingAway // "Going away"
	ReasonInterrupt = engine.ReasonInterrupt // "Connection interrupted"
	ReasonTooBig    = engine.ReasonTooBig    // "Message too big"
	ReasonAnother   = engine.ReasonAnother   // "Another connection still open"
	ReasonGoAway    = engine.ReasonGoAway    // "Go away!"
	ReasonQueueFull = engine.ReasonQueueFull // "Send queue overflow"
)

// Errors returned by Session methods. They are the engine's values, so
// errors.Is matches whichever side returned them.
var (
	ErrClosed    = engine.ErrClosed
	ErrQueueFull = engine.ErrQueueFull
)

// Request is what the application may know of the request that opened the
// session, for authentication: a token in the query string or a header.
// Cookies are removed unless the transport is configured to keep them,
// because iframe-based transports would turn cookie authentication into a
// cross-site request forgery hole.
//
// The engine has a mirror type with the same fields, so that
// Session.Request converts it without copying field by field; the
// transport's TestMirrorTypes keeps the two identical.
type Request struct {
	Header     http.Header
	Query      url.Values
	RemoteAddr string
	Host       string
	Path       string
}

// Observer receives session events. Implementations must be cheap and safe
// for concurrent use: they are called on the hot path, never under a
// session lock. The metrics package implements it with Prometheus; core
// packages only know this interface.
type Observer interface {
	SessionOpened(t Transport)
	// TimeToOpen is the time from the first request of a session to its
	// open frame being written.
	TimeToOpen(t Transport, d time.Duration)
	SessionClosed(t Transport, reason CloseCause, lifetime time.Duration)
	// MessageReceived is called once per message the client sent.
	MessageReceived(t Transport, bytes int)
	// FrameWritten is called once per frame written to a connection, with
	// the number of application messages it carried and its encoded size.
	FrameWritten(t Transport, kind FrameKind, messages, bytes int)
	// DeliveryDelay is the time from Send to the message's bytes being
	// written to the client's connection, once per message.
	DeliveryDelay(t Transport, d time.Duration)
	// ReceiveDelay is the time from a message being read off the client's
	// connection to the application's Recv returning it, once per
	// message: how long messages wait for the application. A lone message
	// handed to an OnMessage callback that was free waited for nothing:
	// 0, and the clock is not read for it.
	ReceiveDelay(t Transport, d time.Duration)
	// HTTPRequest is called once per HTTP request to a session endpoint
	// (polling, streaming and send requests), with the answer's status
	// code and the time the request took.
	HTTPRequest(e Endpoint, status int, d time.Duration)
	// LimitHit is called once each time a limit refuses something: a
	// request, a message, a session (see Limit).
	LimitHit(t Transport, l Limit)
}

// NopObserver ignores every event.
type NopObserver struct{}

func (NopObserver) SessionOpened(Transport)                            {}
func (NopObserver) TimeToOpen(Transport, time.Duration)                {}
func (NopObserver) SessionClosed(Transport, CloseCause, time.Duration) {}
func (NopObserver) MessageReceived(Transport, int)                     {}
func (NopObserver) FrameWritten(Transport, FrameKind, int, int)        {}
func (NopObserver) DeliveryDelay(Transport, time.Duration)             {}
func (NopObserver) ReceiveDelay(Transport, time.Duration)              {}
func (NopObserver) HTTPRequest(Endpoint, int, time.Duration)           {}
func (NopObserver) LimitHit(Transport, Limit)                          {}

// Options bound a session's resources and timing. The zero value of every
// field means "use the default" documented next to it.
type Options struct {
	// HeartbeatDelay is how long an attached receiver may stay silent before
	// the session writes an 'h' frame, so proxies do not cut idle
	// connections. Default 25s (the protocol's figure).
	HeartbeatDelay time.Duration

	// DisconnectDelay is how long a session without a receiving connection
	// is kept before it expires, and how long a closed session keeps
	// answering with its close frame. Default 5s.
	DisconnectDelay time.Duration

	// SendQueueMessages and SendQueueBytes bound the messages written with
	// Send that the client has not received yet. A session that would
	// exceed either is closed with CodeQueueOverflow instead of growing
	// memory. Defaults 16384 messages and 4 MiB.
	SendQueueMessages int
	SendQueueBytes    int

	// RecvQueueMessages bounds received messages that the application has
	// not taken with Recv yet. When it is full, the connection that
	// carries more messages waits (TCP backpressure), it is never dropped.
	// Default 256.
	RecvQueueMessages int
	// RecvQueueBytes bounds the same queue in bytes: each message counts
	// its length plus RecvEntryBytes, its queue entry. The connection
	// waits likewise, except that an empty queue always takes one
	// message. Default 1 MiB.
	RecvQueueBytes int

	// ReceiverWait is how long a second receiving request waits for the
	// attached one to leave before it is answered
	// c[2010,"Another connection still open"]. A client that aborts a
	// request and at once sends another (sockjs-client on a timeout, the
	// protocol suite) may be faster than the server's noticing the abort;
	// waiting for that instead of refusing keeps such sessions alive. Only
	// a true second receiver pays the wait. Default 500ms: enough to
	// notice an abort on a loaded machine, well within the 1 s the protocol
	// suite gives a 2010 answer.
	ReceiverWait time.Duration

	// Observer receives session events for metrics. Default: none.
	Observer Observer
}

// Defaults for Options. The values are the engine's; the comments say
// them (TestConstantComments keeps them true).
const (
	DefaultHeartbeatDelay    = engine.DefaultHeartbeatDelay    // 25s
	DefaultDisconnectDelay   = engine.DefaultDisconnectDelay   // 5s
	DefaultSendQueueMessages = engine.DefaultSendQueueMessages // 16384
	DefaultSendQueueBytes    = engine.DefaultSendQueueBytes    // 4194304 (4 MiB)
	DefaultRecvQueueMessages = engine.DefaultRecvQueueMessages // 256
	DefaultRecvQueueBytes    = engine.DefaultRecvQueueBytes    // 1048576 (1 MiB)
	// RecvEntryBytes is what a queued received message costs beyond its
	// bytes, so that a flood of empty messages is bounded too.
	RecvEntryBytes      = engine.RecvEntryBytes      // 32
	DefaultReceiverWait = engine.DefaultReceiverWait // 500ms
)

// WithDefaults returns o with every zero field replaced by its default.
func (o Options) WithDefaults() Options {
	if o.HeartbeatDelay <= 0 {
		o.HeartbeatDelay = DefaultHeartbeatDelay
	}
	if o.DisconnectDelay <= 0 {
		o.DisconnectDelay = DefaultDisconnectDelay
	}
	if o.SendQueueMessages <= 0 {
		o.SendQueueMessages = DefaultSendQueueMessages
	}
	if o.SendQueueBytes <= 0 {
		o.SendQueueBytes = DefaultSendQueueBytes
	}
	if o.RecvQueueMessages <= 0 {
		o.RecvQueueMessages = DefaultRecvQueueMessages
	}
	if o.RecvQueueBytes <= 0 {
		o.RecvQueueBytes = DefaultRecvQueueBytes
	}
	if o.ReceiverWait <= 0 {
		o.ReceiverWait = DefaultReceiverWait
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	return o
}
