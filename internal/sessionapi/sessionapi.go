// Package sessionapi is the transport side of a session: what this
// module's transports call to feed a session and to take frames out of it.
// Applications never see it: *session.Session exports only the
// application API, and this package is internal. The hub and the exec
// bridge are applications: they use the Session API alone
// (session.TestApplicationsUseOnlyPublicAPI).
//
// The functions are set once, by package session at init, before any
// package importing this one runs; each call is one indirect call, with no
// allocation and no interface conversion.
package sessionapi

import (
	"context"

	"github.com/sockjsd/sockjsd/internal/sessionapi/hook"
	"github.com/sockjsd/sockjsd/session"
)

var (
	serve           = hook.Serve.(func(*session.Session, session.Receiver))
	serveConn       = hook.ServeConn.(func(*session.Session, session.Receiver, func()))
	connLost        = hook.ConnLost.(func(*session.Session, session.Receiver))
	deliver         = hook.Deliver.(func(*session.Session, context.Context, []string) error)
	end             = hook.End.(func(*session.Session, session.CloseCause))
	closeFor        = hook.CloseFor.(func(*session.Session, int, string, session.CloseCause))
	closed          = hook.Closed.(func(*session.Session) bool)
	hasOnMessage    = hook.HasOnMessage.(func(*session.Session) bool)
	attached        = hook.Attached.(func(*session.Session) bool)
	written         = hook.Written.(func(*session.Session) <-chan struct{})
	acquireSendSlot = hook.AcquireSendSlot.(func(*session.Session, int) bool)
	releaseSendSlot = hook.ReleaseSendSlot.(func(*session.Session))
)

// Serve attaches r as s's receiving connection and writes frames to it
// until r is done, r's connection goes away, or the session ends.
//
// Only one receiver may be attached at a time. A second one waits up to
// Options.ReceiverWait for the first to leave, because a client that
// aborted a request and sent a new one may be faster than the server's
// noticing the abort; if the first is still there after that, the second
// gets c[2010,"Another connection still open"] and the first is not
// disturbed. A closed session answers every receiver with its close frame.
func Serve(s *session.Session, r session.Receiver) { serve(s, r) }

// ServeConn attaches r, a connection that lives as long as its session
// (a websocket), writes the open frame and returns: from then on frames
// are written by a goroutine started only while there is something to
// write, and heartbeats by a timer, so that an idle session holds no
// writer goroutine. r's Gone is not watched: when the connection goes
// away the transport says so with ConnLost. onEnd runs once the
// close frame was written to r (or failed), on the writing goroutine.
func ServeConn(s *session.Session, r session.Receiver, onEnd func()) { serveConn(s, r, onEnd) }

// ConnLost closes s with c[1002,"Connection interrupted"] because r, its
// connection receiver, broke or its client left. A receiver the session
// already let go (a streaming response that reached its limit) changes
// nothing.
func ConnLost(s *session.Session, r session.Receiver) { connLost(s, r) }

// Deliver hands messages received from the client to the application, in
// order. It waits while the receive queue is full, which is how a client
// that sends faster than the application reads is slowed down. It returns
// session.ErrClosed once the session is closed, or ctx's error.
func Deliver(s *session.Session, ctx context.Context, msgs []string) error {
	return deliver(s, ctx, msgs)
}

// End finishes a session whose lifetime is its connection's (websockets):
// it is closed if it was not, and leaves the registry at once instead of
// after DisconnectDelay.
func End(s *session.Session, why session.CloseCause) { end(s, why) }

// CloseFor closes s for a reason other than the application's request (a
// limit, a protocol error, shutdown), so that metrics can tell them apart.
// It is a no-op on a closed session. Applications have s.CloseFor.
func CloseFor(s *session.Session, code int, reason string, why session.CloseCause) {
	closeFor(s, code, reason, why)
}

// Closed reports whether s has been closed (as CloseInfo's third result
// does for applications).
func Closed(s *session.Session) bool { return closed(s) }

// HasOnMessage reports whether the application called s.OnMessage: the
// session then outlives its handler.
func HasOnMessage(s *session.Session) bool { return hasOnMessage(s) }

// Attached reports whether a receiving connection is attached to s now.
func Attached(s *session.Session) bool { return attached(s) }

// Written is s.Written(): a channel closed once s has written its next
// batch of messages to the client.
func Written(s *session.Session) <-chan struct{} { return written(s) }

// AcquireSendSlot reserves one of max concurrent send requests (xhr_send,
// jsonp_send) for s and reports whether one was free; each successful call
// must be paired with ReleaseSendSlot. A waiting send request holds its
// body, so their number is what bounds that memory.
func AcquireSendSlot(s *session.Session, max int) bool { return acquireSendSlot(s, max) }

// ReleaseSendSlot frees a slot taken by AcquireSendSlot.
func ReleaseSendSlot(s *session.Session) { releaseSendSlot(s) }
