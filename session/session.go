package session

import (
	"context"

	"github.com/sockjsd/sockjsd/internal/engine"
)

// Session is one SockJS session, whatever its transport, as an
// application sees it: ID, Transport, Request and Context describe it;
// Send, Recv (or OnMessage) and Close (or CloseFor, to count the close
// under a reason) talk to the client; Buffered and Written tell how far
// the client lags behind, for back-pressure; CloseInfo tells whether and
// how it ended. Its methods are safe for concurrent use.
//
// This is all the hub and the exec bridge of this module use, so any
// service like them can be built outside it (see the package example).
// TestSessionMethodSet keeps the exported method set to exactly this list.
//
// Session is a defined type over the engine's session (internal/engine),
// not an alias and not an interface: a *Session and the engine's
// *Session are the same pointer to the same struct, converted for free in
// either direction, so the application's calls cost no allocation and no
// interface call; and since a defined type does not inherit methods, the
// transport side of the engine's session (attaching receivers, delivering
// what the client sent, closing for a limit) is not reachable from here,
// so an application cannot bypass the protocol.
type Session engine.Session

// e is the engine's view of s: the same pointer.
func (s *Session) e() *engine.Session { return (*engine.Session)(s) }

// ID is an opaque, crypto-random identifier made by the server. It is never
// the session id from the URL: whoever knows that one can read and write the
// session, so the protocol keeps it from applications.
func (s *Session) ID() string { return s.e().ID() }

// Transport is the transport the session was opened with.
func (s *Session) Transport() Transport { return s.e().Transport() }

// Request describes the request that opened the session. Each call
// builds its Header and Query afresh from what the session keeps (a
// compact copy, smaller than the maps), so call it once per use rather
// than per message.
func (s *Session) Request() Request { return Request(s.e().Request()) }

// Context is cancelled when the session closes.
func (s *Session) Context() context.Context { return s.e().Context() }

// Send queues msg for the client and returns at once. Messages are
// delivered in order, exactly once, across poll cycles and streaming
// rollovers. If the client has fallen so far behind that the send queue
// limit is reached, the session is closed with code 3009 and ErrQueueFull
// is returned.
func (s *Session) Send(msg string) error { return s.e().Send(msg) }

// SendMany is Send for each of msgs, in order, at once: they are queued
// together, and a websocket that is not busy gets them with one write
// (a fan-out that fell behind catches up with half the system calls).
// The send queue limit counts them all: when they do not fit, none is
// queued, the session is closed with code 3009 and ErrQueueFull is
// returned.
func (s *Session) SendMany(msgs []string) error { return s.e().SendMany(msgs) }

// Recv returns the next message from the client. It returns ErrClosed once
// the session is closed and every received message was taken, or ctx's
// error.
func (s *Session) Recv(ctx context.Context) (string, error) { return s.e().Recv(ctx) }

// OnMessage makes the session hand each message from the client to f, in
// order, one at a time, on the goroutine that received it (a websocket's
// reader, an xhr_send request), instead of queueing it for Recv. No
// goroutine then waits for the session's messages and none is woken for
// each one: an echo answers on the goroutine that read the message, and a
// websocket session's frames are written by that goroutine when it is
// idle (see pump.go).
//
// Messages received before OnMessage are handed to f first, in order. A
// handler that calls OnMessage may return at once: the session then stays
// open until the client leaves or Close is called. Recv must not be used
// with OnMessage (it waits until the session closes).
//
// f must not block for long: while it runs the client's connection is not
// read, which is how a client is slowed down to the speed of its handler.
// Messages sent while f runs (by f or anyone else) are written when it
// returns. A panic in f closes the session with c[3000,"Go away!"], as a
// panic in a handler does; the transport logs it.
func (s *Session) OnMessage(f func(msg string)) { s.e().OnMessage(f) }

// Buffered returns the messages and bytes queued by Send and not yet
// written to the client, counting a batch while it is being written: the
// server side of a WebSocket's bufferedAmount, for applications that want
// to slow down before the send queue limit closes the session.
func (s *Session) Buffered() (messages, bytes int) { return s.e().Buffered() }

// Written returns a channel that is closed once the session has written
// its next batch of messages to the client's connection, so that Buffered
// has gone down: it is the back-pressure signal of a service whose
// producer may outrun its client (a program's output, a feed), which
// waits on it instead of polling Buffered.
//
// Take the channel before reading Buffered, so that a batch written in
// between is not missed, and wait on Context as well: the channel is not
// closed when the session ends, and a session may end with messages still
// queued (its client left, or a 3009 overflow dropped them). A
// producer that keeps its output within a window below the send queue
// limits (Options.SendQueueMessages and SendQueueBytes) then runs as fast
// as its client reads and never gets the client closed with 3009:
//
//	for {
//		written := s.Written()
//		if n, _ := s.Buffered(); n < window {
//			break // room: Send the next message
//		}
//		select {
//		case <-written:
//		case <-s.Context().Done():
//			return // closed
//		}
//	}
//
// "Written" means handed to the connection (a websocket, a streaming or
// polling response), not acknowledged by the client. A polling client's
// batch is written when it polls, so a session between polls waits for
// the next one. Every caller waiting for the same batch gets the same
// channel; a session's first call after each batch allocates one.
func (s *Session) Written() <-chan struct{} { return s.e().Written() }

// Close closes the session: messages already sent are delivered, then the
// close frame c[code,"reason"]. It returns ErrClosed if the session was
// already closed. Observer.SessionClosed counts it under CauseServer; an
// application closing for a limit, an error or shutdown says so with
// CloseFor.
func (s *Session) Close(code int, reason string) error { return s.e().Close(code, reason) }

// CloseFor is Close, counted under why in Observer.SessionClosed (the
// sockjs_sessions_closed_total reason label): a service that closes a
// session because it hit a limit (CauseLimit), met an error
// (CauseError) or is shutting down (CauseShutdown) says so, and its
// metrics tell those apart from an ordinary end (CauseServer, what
// Close counts). A why that is not one of the defined reasons counts as
// CauseServer, so that every close is counted once.
//
// What the client receives does not depend on why: the messages already
// sent are still delivered, in order, and then the close frame
// c[code,"reason"] (codes 4000-4999 are the application's). Nothing
// queued is dropped, unlike on a send queue overflow (3009) or a broken
// connection (1002), where the backlog goes so that the close frame is
// the next thing the client sees. From the moment
// CloseFor returns, Context is done, Send returns ErrClosed and CloseInfo
// reports the code and reason. It returns ErrClosed, and changes nothing
// (not even the count), if the session was already closed.
func (s *Session) CloseFor(why CloseCause, code int, reason string) error {
	return s.e().CloseFor(why, code, reason)
}

// CloseInfo returns the close code and reason once the session is closed
// (closed false and code 0 before). It is the one method beyond sending
// and receiving an application needs: after Recv returns ErrClosed, or
// Context is done, it tells the client's disappearance (1002) from a limit
// (3009), a shutdown (1001) or the application's own Close, for logging
// and for deciding whether to keep the user's state for a reconnect.
func (s *Session) CloseInfo() (code int, reason string, closed bool) { return s.e().CloseInfo() }

// HandedOff reports whether the session ended here because it moved to
// another node of the cluster (transport.HandOff): it is not over. An
// application that tells someone of a session's end (a backend, a
// webhook) checks it when Context is done: a hand-off that failed after
// Export closes the session with the same 1001 as one that succeeded
// ends it here, and only the latter is not an end.
func (s *Session) HandedOff() bool { return s.e().HandedOff() }
