package engine

import "time"

// Transport names the connection kind a session was opened with. It is a
// small integer so that observers can index arrays instead of hashing
// strings on the hot path.
type Transport uint8

// The transports of SockJS 0.3.3. Their String values are the names
// sockjs-client uses, and the only values metrics labels ever take.
const (
	WebSocket Transport = iota
	RawWebSocket
	XHRStreaming
	XHRPolling
	EventSource
	HTMLFile
	JSONPPolling
	NumTransports // number of transports, for arrays indexed by Transport
)

var transportNames = [NumTransports]string{
	WebSocket:    "websocket",
	RawWebSocket: "websocket-raw",
	XHRStreaming: "xhr-streaming",
	XHRPolling:   "xhr-polling",
	EventSource:  "eventsource",
	HTMLFile:     "htmlfile",
	JSONPPolling: "jsonp-polling",
}

func (t Transport) String() string {
	if t < NumTransports {
		return transportNames[t]
	}
	return "unknown"
}

// CloseCause classifies why a session ended, for metrics (the reason
// label of sockjs_sessions_closed_total). It is not the close frame's
// reason text, which the Reason* constants name.
type CloseCause uint8

// Causes of a session's end.
const (
	CauseClient   CloseCause = iota // the client closed (websocket close, or went away cleanly)
	CauseServer                     // the application called Close, or its handler returned
	CauseTimeout                    // no receiving connection within DisconnectDelay
	CauseLimit                      // a queue, message or body limit was exceeded
	CauseError                      // a network or protocol error interrupted the session
	CauseShutdown                   // the server is shutting down
	NumCauses
)

var causeNames = [NumCauses]string{"client", "server", "timeout", "limit", "error", "shutdown"}

func (r CloseCause) String() string {
	if r < NumCauses {
		return causeNames[r]
	}
	return "unknown"
}

// FrameKind is the first byte of a SockJS frame.
type FrameKind byte

// Frame kinds of the SockJS protocol.
const (
	FrameOpen      FrameKind = 'o'
	FrameHeartbeat FrameKind = 'h'
	FrameMessages  FrameKind = 'a'
	FrameClose     FrameKind = 'c'
)

// Observer is session.Observer's mirror: the same method set, so that any
// session.Observer is an Observer without conversion or adapter (see
// session.Observer for what each method is told).
//
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

// Endpoint is the last element of a session URL.
type Endpoint uint8

// Session endpoints.
const (
	EndpointXHR Endpoint = iota
	EndpointXHRSend
	EndpointXHRStreaming
	EndpointEventSource
	EndpointHTMLFile
	EndpointJSONP
	EndpointJSONPSend
	NumEndpoints
)

var endpointNames = [NumEndpoints]string{"xhr", "xhr_send", "xhr_streaming", "eventsource", "htmlfile", "jsonp", "jsonp_send"}

func (e Endpoint) String() string {
	if e < NumEndpoints {
		return endpointNames[e]
	}
	return "unknown"
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
