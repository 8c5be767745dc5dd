// Package engine is the machinery of a SockJS session behind package
// session's face: the state machine, the send and receive queues, the
// heartbeat and expiry timers, the registry of a service's live sessions,
// and the writers that take frames to whatever connection a transport
// attached (a Receiver).
//
// Package transport drives it directly: it creates sessions in a
// Registry, attaches receivers with Session.Serve and Session.ServeConn,
// hands in what the client sent with Session.Deliver, and closes for a
// limit or an error with Session.CloseWith and Session.End. Every one of
// those calls is a plain method call the compiler and the tools see.
//
// Applications never see this package: it is internal, and the
// *session.Session they get is a defined type over *Session (the same
// pointer, converted for free), which declares only the application API.
// Because package session is built on this one, this one cannot import it:
// the enums (Transport, CloseCause, FrameKind, Endpoint, Limit), the close
// codes and the errors are defined here and aliased there; Options,
// Request and Observer are mirrored (transport converts Options, a
// session.Observer is an Observer as it stands, and TestMirrorTypes in
// package transport keeps the mirrors in step).
package engine
