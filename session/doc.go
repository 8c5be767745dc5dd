// Package session is the transport-independent half of a SockJS server: what
// an application holds for one client, whatever transport the client could
// open (a websocket, a streaming response, a poll every few seconds).
//
// A SockJS client gets the same message API over every transport. On the
// server that API is a *Session: package transport creates one per client
// and runs the application's handler, func(*Session), on a goroutine of its
// own. The handler reads with Recv, or registers OnMessage and returns;
// writes with Send; ends the session with Close. Nothing else is needed to
// write a service, and the same code serves a websocket and a jsonp poll:
//
//	func echo(s *session.Session) {
//		for {
//			msg, err := s.Recv(s.Context())
//			if err != nil {
//				return // the session closed
//			}
//			if err := s.Send(msg); err != nil {
//				return // the client fell too far behind: closed with 3009
//			}
//		}
//	}
//
// # Guarantees
//
//   - Send never blocks on the network. It queues the message and returns;
//     the transport writes it when the client has a connection to take it.
//     A slow client slows only its own writer.
//   - Messages are delivered in order and exactly once, across poll cycles
//     and streaming responses that end and are reopened. A receiving
//     connection that breaks while a batch may be lost closes the session
//     with 1002 rather than carry on past a gap.
//   - Everything a client can make the server hold is bounded (Options):
//     past the send queue the session is closed with 3009 and Send returns
//     ErrQueueFull, so memory does not grow with a client that stopped
//     reading; a full receive queue makes the client's connection wait
//     instead (TCP backpressure), and nothing is dropped.
//   - A session always ends with a close code, which CloseInfo reports: the
//     application's Close, 3000 when its handler returned, 1002 when the
//     client's connection broke or did not come back within the disconnect
//     delay, 1001 at shutdown, 3009 or 1009 for a limit. After
//     the handler returns the session is closed, so no session outlives the
//     code that serves it (OnMessage excepted: see Session.OnMessage).
//   - A panic in the handler or in OnMessage's function is logged and
//     closes that session only.
//
// # Types
//
// Session is the application's side. Options bound a session's queues and
// set its heartbeat and expiry; transport.Options carries them. Observer
// receives every session event for metrics (package metrics implements it
// with Prometheus) so that this package depends on no metrics library;
// Transport, CloseCause, FrameKind, Endpoint and Limit are the small enums
// its methods take. transport.Handler.Sessions and Range count and reach a
// service's live sessions.
//
// This package is a face: the sessions themselves (state machine, queues,
// timers, the registry, the writers that take frames to a connection) are
// this module's internal/engine, which the transports drive directly.
// Session is a defined type over the engine's session, so the application
// holds the same pointer the transports do, at no cost, but sees only the
// methods declared here; the engine's transport side (attaching receivers,
// delivering what the client sent, closing for a limit) is out of its
// reach, so an application cannot bypass the protocol. The enums, close
// codes and errors are the engine's, aliased here, so that values compare
// and errors.Is matches across the two.
//
// A session never writes to a network connection itself: a transport
// attaches a receiver, and queued messages are taken under the session's
// lock, the lock is released, and only then is the frame written. That is
// why a slow write never holds up Send, other sessions or the registry.
//
// The README's table of Session methods and docs/limits.md (every limit and
// what hitting it costs the client) say more.
package session
