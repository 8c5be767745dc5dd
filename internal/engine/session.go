package engine

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Close codes and reasons used by the protocol and by this server. Codes
// 3000-3999 are reserved for libraries like this one, 4000-4999 for
// applications.
const (
	CodeGoingAway   = 1001 // server shutdown
	CodeInterrupted = 1002 // the receiving connection broke
	CodeTooBig      = 1009 // a message over the size limit
	CodeAnotherConn = 2010 // a second receiver for one session
	CodeGoAway      = 3000 // the application closed the session
	CodeQueueFull   = 3009 // the client did not read fast enough
	ReasonGoingAway = "Going away"
	ReasonInterrupt = "Connection interrupted"
	ReasonTooBig    = "Message too big"
	ReasonAnother   = "Another connection still open"
	ReasonGoAway    = "Go away!"
	ReasonQueueFull = "Send queue overflow"
)

// Errors returned by Session methods.
var (
	ErrClosed    = errors.New("sockjs: session closed")
	ErrQueueFull = errors.New("sockjs: send queue full, session closed")
	ErrTooMany   = errors.New("sockjs: too many sessions")
)

// Frame is one SockJS frame before encoding. Transports encode it into their
// own wire format ("a[...]\n", "data: a[...]\r\n\r\n", a websocket message…).
type Frame struct {
	Kind     FrameKind
	Messages []string // FrameMessages only
	Code     int      // FrameClose only
	Reason   string   // FrameClose only
	// Last asks the receiver to end its answer normally after this
	// frame, so that the client asks again (a handed-off session's
	// receiver, see handoff.go).
	Last bool
}

// Receiver is one client connection that frames are delivered to: an HTTP
// response held open, a websocket, or (later) a connection held by another
// node. The session only knows this interface.
type Receiver interface {
	// WriteFrame writes and flushes one frame. done reports that this
	// receiver takes no more frames (a polling response was answered, a
	// streaming response reached its size limit); err that the connection
	// failed.
	WriteFrame(f *Frame) (done bool, err error)
	// Gone is closed when the client's connection went away.
	Gone() <-chan struct{}
}

// Request is session.Request's mirror, with the same fields, so that one
// converts to the other (session.Session.Request does).
//
// Request is what the application may know of the request that opened the
// session, for authentication: a token in the query string or a header.
// Cookies are removed unless the transport is configured to keep them,
// because iframe-based transports would turn cookie authentication into a
// cross-site request forgery hole.
type Request struct {
	Header     http.Header
	Query      url.Values
	RemoteAddr string
	Host       string
	Path       string
}

// keptRequest is a Request as a session keeps it: the headers as name
// and value pairs rather than a map, which costs an idle session over
// 400 bytes even for one header (a map group); Session.Request builds
// the map.
type keptRequest struct {
	header     []string // name, value, name, value, …: a name once per value, values in order
	query      url.Values
	remoteAddr string
	host       string
	path       string
}

func keepRequest(r Request) keptRequest {
	k := keptRequest{query: r.Query, remoteAddr: r.RemoteAddr, host: r.Host, path: r.Path}
	n := 0
	for _, vs := range r.Header {
		n += 2 * len(vs)
	}
	if n > 0 {
		k.header = make([]string, 0, n)
		for name, vs := range r.Header {
			for _, v := range vs {
				k.header = append(k.header, name, v)
			}
		}
	}
	return k
}

// request is the Request k keeps, with a new Header map (nil when no
// header was kept).
func (k *keptRequest) request() Request {
	r := Request{Query: k.query, RemoteAddr: k.remoteAddr, Host: k.host, Path: k.path}
	if len(k.header) > 0 {
		r.Header = make(http.Header, len(k.header)/2)
		for i := 0; i+1 < len(k.header); i += 2 {
			r.Header[k.header[i]] = append(r.Header[k.header[i]], k.header[i+1])
		}
	}
	return r
}

type state uint8

const (
	stateNew     state = iota // created, open frame not written yet
	stateOpen                 // open frame written
	stateClosing              // Close was called: flush queued messages, then the close frame
	stateClosed               // close frame decided; served to every later receiver until expiry
	stateExpired              // gone from the registry
)

type queued struct {
	msg string
	at  int64 // monotonic nanoseconds (see now)
}

var epoch = time.Now()

// now is a cheap monotonic clock in nanoseconds since process start.
func now() int64 { return int64(time.Since(epoch)) }

// Session is one SockJS session, whatever its transport. Its methods
// are safe for concurrent use. It has two sides: the application's (ID,
// Transport, Request, Context, Send, SendMany, Recv, OnMessage, Buffered,
// Written, Close, CloseFor, CloseInfo), which package session re-declares on its
// face type, and the transport's (Serve, ServeConn, ConnLost, Deliver,
// End, CloseWith, Closed, HasOnMessage, Attached, AcquireSendSlot,
// ReleaseSendSlot), which only package transport calls. An application
// holds a *session.Session, the same pointer under a type that has only
// the first list.
type Session struct {
	// What a message sent to an idle connection reads and writes (Send,
	// writeNowLocked), together at the start: a hub fan-out reaches a
	// cold session per delivery, and these fields spread over nine
	// cache lines were a third of the send path's own CPU (perf
	// annotate: the first load of each line).
	mu        sync.Mutex
	state     state
	transport Transport
	pumping   bool  // a pump runs (or the close frame is written)
	held      bool  // nowConn holds part of a frame: a pump flushes it
	nowBusy   bool  // a frame written now is being written, or its held part flushed: Freeze waits for it
	handoff   uint8 // hand-off state (handoff.go, handoffEnd below)
	holdPump  int   // OnMessage callbacks running (callback.go, onMsg below)
	opts      *Options
	out       []queued // messages sent and not yet written
	outBytes  int
	writing   int      // messages of the batch being written (Buffered)
	writingB  int      // and their bytes
	spare     []queued // the previous batch's array, reused
	// A connection receiver served by pumps (serveConn, pump.go), and
	// nowConn, conn when it takes frames without waiting (writenow.go).
	conn      Receiver
	nowConn   NowWriter
	lastWrite int64         // when the last frame was written (now)
	written   chan struct{} // Written: closed after the next batch is written
	pumpFrame Frame         // the pump's frame, reused (one pump at a time)

	id      string
	key     string // registry key: the URL session id, or "ws/"+id for sessions without one
	req     keptRequest
	reg     *Registry
	created int64

	ctx    context.Context
	cancel context.CancelFunc
	// Received messages not yet taken by Recv live in inQ (under mu), a
	// slice that grows only as far as it is used: an idle session costs
	// nothing for its receive queue. inReady wakes Recv, inSpace wakes
	// a Deliver waiting for room (each made by its first waiter: lazyChan).
	inReady chan struct{}
	inSpace chan struct{}

	notify chan struct{} // capacity 1: "something changed" for the Serve loop (made by it: lazyChan)

	sendSlots atomic.Int32 // send requests in flight (acquireSendSlot)

	inQ         []queued // received messages with their arrival time
	inHead      int
	inBytes     int // bytes of inQ[inHead:], counted as Options.RecvQueueBytes says
	attached    bool
	releaseDue  bool // the attached receiver's answer ends with its next frame (Release)
	opened      bool // the open frame was written
	closeCode   int
	closeReason string
	expiry      *time.Timer

	// Receivers waiting to attach wait for detached; settling is closed
	// when the last polling answer was sent or failed (see Finisher).
	detached chan struct{}
	settling chan struct{}

	// The connection receiver's end (serveConn, pump.go; conn above).
	connEnd func()
	hbDue   bool        // the heartbeat timer asks for a heartbeat frame
	hb      *time.Timer // heartbeat timer

	// OnMessage (callback.go): the callback, set once under mu; cbMu
	// runs it for one message at a time. While holdPump (above) > 0 a callback
	// runs, no pump starts, and the callback's goroutine writes what is
	// pending when it returns (releasePump).
	onMsg func(string)
	cbMu  sync.Mutex

	// Hand-off (handoff.go): handoff (above) is hoNone, hoFrozen or
	// hoDone; handoffEnd is closed when a freeze ends (Done or Thaw).
	handoffEnd chan struct{}
	// finishPending: a batch was written to a polling answer that is not
	// finished (sent) yet (writeBatch sets it, detach clears it).
	finishPending bool
}

func newSession(key string, t Transport, req Request, opts *Options, reg *Registry) *Session {
	ctx, cancel := context.WithCancel(context.Background())
	return &Session{
		id:        NewID(),
		key:       key,
		transport: t,
		req:       keepRequest(req),
		opts:      opts,
		reg:       reg,
		created:   now(),
		ctx:       ctx,
		cancel:    cancel,
	}
}

// NewID returns 128 crypto-random bits, base64url-encoded.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("sockjs: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ID is an opaque, crypto-random identifier made by the server. It is never
// the session id from the URL: whoever knows that one can read and write the
// session, so the protocol keeps it from applications.
func (s *Session) ID() string { return s.id }

// Transport is the transport the session was opened with.
func (s *Session) Transport() Transport { return s.transport }

// Request describes the request that opened the session.
//
// Its Header and Query are never nil. Header is a new map at each call,
// built from the session's compact copy of the kept headers; the session
// keeps no map for the query when the request had none (about 200 bytes
// of an idle session), and Query is then a new empty one at each call.
func (s *Session) Request() Request {
	r := s.req.request()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	if r.Query == nil {
		r.Query = url.Values{}
	}
	return r
}

// Context is cancelled when the session closes.
func (s *Session) Context() context.Context { return s.ctx }

// Send queues msg for the client and returns at once. Messages are
// delivered in order, exactly once, across poll cycles and streaming
// rollovers. If the client has fallen so far behind that the send queue
// limit is reached, the session is closed with code 3009 and ErrQueueFull
// is returned.
func (s *Session) Send(msg string) error {
	s.mu.Lock()
	if err := s.roomLocked(1, len(msg)); err != nil {
		return err
	}
	s.out = append(s.out, queued{msg: msg, at: now()})
	s.outBytes += len(msg)
	s.queuedLocked()
	return nil
}

// SendMany is Send for each of msgs, in order, at once: the messages are
// queued together, and a connection that takes frames without waiting
// (NowWriter) gets them with one write. The queue limits count them all:
// when they do not fit, none is queued and the session is closed with
// 3009 (ErrQueueFull), as Send does.
func (s *Session) SendMany(msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	s.mu.Lock()
	if err := s.roomLocked(len(msgs), n); err != nil {
		return err
	}
	t := now()
	for _, m := range msgs {
		s.out = append(s.out, queued{msg: m, at: t})
	}
	s.outBytes += n
	s.queuedLocked()
	return nil
}

// roomLocked checks that k more messages of n bytes fit in the send
// queue. When they do not, or the session is closing, it releases s.mu
// and returns the error: the backlog is dropped and the session closed
// with 3009 (ErrQueueFull). s.mu must be held.
func (s *Session) roomLocked(k, n int) error {
	if s.state >= stateClosing {
		s.mu.Unlock()
		return ErrClosed
	}
	if len(s.out)+k > s.opts.SendQueueMessages || s.outBytes+n > s.opts.SendQueueBytes {
		// The backlog is useless to a client that cannot keep up: drop it
		// so that the close frame is the next thing it sees, and let the
		// garbage collector have it now rather than at expiry.
		clear(s.out)
		s.out, s.outBytes = nil, 0
		s.closeLocked(CodeQueueFull, ReasonQueueFull, CauseLimit)
		s.mu.Unlock()
		s.opts.Observer.LimitHit(s.transport, LimitSendQueue)
		s.wake()
		return ErrQueueFull
	}
	return nil
}

// queuedLocked gets what was just queued written: now, by the caller,
// to an idle connection that takes frames without waiting (writenow.go);
// otherwise by a pump it starts or the Serve loop it signals. It releases
// s.mu.
func (s *Session) queuedLocked() {
	served := s.conn == nil // by a Serve loop, if any
	start := s.startPumpLocked()
	if start && s.nowConn != nil && s.handoff == hoNone {
		s.writeNowLocked() // no goroutine for an idle connection
		return
	}
	notify := s.notify
	s.mu.Unlock()
	if start {
		go s.pump()
	} else if served {
		signal(notify)
	}
}

// Recv returns the next message from the client. It returns ErrClosed once
// the session is closed and every received message was taken, or ctx's
// error.
func (s *Session) Recv(ctx context.Context) (string, error) {
	for {
		s.mu.Lock()
		if s.inHead < len(s.inQ) {
			q := s.inQ[s.inHead]
			s.inQ[s.inHead] = queued{}
			s.inHead++
			s.inBytes -= len(q.msg) + RecvEntryBytes
			more := s.inHead < len(s.inQ)
			space, ready := s.inSpace, s.inReady
			if !more {
				// Empty: rewind, and let a large array go.
				s.inHead = 0
				if cap(s.inQ) > 64 {
					s.inQ = nil
				} else {
					s.inQ = s.inQ[:0]
				}
			}
			s.mu.Unlock()
			signal(space)
			if more {
				signal(ready) // another Recv caller may be waiting
			}
			s.opts.Observer.ReceiveDelay(s.transport, time.Duration(now()-q.at))
			return q.msg, nil
		}
		closed := s.state >= stateClosing
		ready := lazyChan(&s.inReady)
		s.mu.Unlock()
		if closed {
			return "", ErrClosed
		}
		select {
		case <-ready:
		case <-s.ctx.Done():
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Close closes the session: messages already sent are delivered, then the
// close frame c[code,"reason"]. It returns ErrClosed if the session was
// already closed. Observer.SessionClosed counts it under CauseServer; an
// application closing for a limit, an error or shutdown says so with
// CloseFor.
func (s *Session) Close(code int, reason string) error {
	return s.CloseFor(CauseServer, code, reason)
}

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
	if why >= NumCauses {
		// Observers index arrays by reason (the metrics package
		// skips an unknown one, and with it the open-sessions gauge).
		why = CauseServer
	}
	s.mu.Lock()
	if s.state >= stateClosing {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closeLocked(code, reason, why)
	s.mu.Unlock()
	s.wake()
	return nil
}

// CloseWith closes the session for a reason other than the application's
// request (a limit, a protocol error, shutdown), so that metrics can tell
// them apart. It is a no-op on a closed session. It is CloseFor for the
// transport side, which has no use for CloseFor's error; it also wakes
// the writer when the session was already closed, which costs nothing
// (every close woke it already) and keeps the transport's paths as they
// were.
func (s *Session) CloseWith(code int, reason string, why CloseCause) {
	s.mu.Lock()
	if s.state < stateClosing {
		s.closeLocked(code, reason, why)
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Session) closeLocked(code int, reason string, why CloseCause) {
	s.state = stateClosing
	s.closeCode, s.closeReason = code, reason
	s.cancel()
	s.opts.Observer.SessionClosed(s.transport, why, time.Duration(now()-s.created))
}

// Deliver hands messages received from the client to the application, in
// order. It waits while the receive queue is full, which is how a client
// that sends faster than the application reads is slowed down.
func (s *Session) Deliver(ctx context.Context, msgs []string) error {
	// Arrival, read once a message may wait (waiting for room counts as
	// receive delay); straight to the callback, deliverTo reads it only
	// if something waits there.
	var t int64
	for _, m := range msgs {
		s.opts.Observer.MessageReceived(s.transport, len(m))
	}
	for len(msgs) > 0 {
		s.mu.Lock()
		if s.state >= stateClosing {
			s.mu.Unlock()
			return ErrClosed
		}
		if f := s.onMsg; f != nil {
			s.holdPump++ // released by deliverTo
			s.mu.Unlock()
			return s.deliverTo(f, msgs, t)
		}
		if t == 0 {
			t = now()
		}
		// Take what fits in both bounds; an empty queue takes at least
		// one message, so that no message is too big to ever fit.
		n := 0
		for n < len(msgs) && len(s.inQ)-s.inHead < s.opts.RecvQueueMessages {
			cost := len(msgs[n]) + RecvEntryBytes
			if s.inBytes+cost > s.opts.RecvQueueBytes && len(s.inQ) > s.inHead {
				break
			}
			s.inQ = append(s.inQ, queued{msg: msgs[n], at: t})
			s.inBytes += cost
			n++
		}
		if n > 0 {
			msgs = msgs[n:]
			ready := s.inReady
			s.mu.Unlock()
			signal(ready)
			continue
		}
		space := lazyChan(&s.inSpace)
		s.mu.Unlock()
		select {
		case <-space:
		case <-s.ctx.Done():
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// lazyChan returns *p, made first if it is nil: a session's wake-up
// channels exist only once something waits on them (most sessions never
// Recv or wait for room, and a websocket's is never served by a Serve
// loop), which saves an idle session three of them. A waiter makes one
// under s.mu after finding nothing to do, and a signaller reads it under
// s.mu after changing what it waits for: a signal is never lost. s.mu
// must be held.
func lazyChan(p *chan struct{}) chan struct{} {
	if *p == nil {
		*p = make(chan struct{}, 1)
	}
	return *p
}

// signal wakes the waiter of a capacity-1 channel, if any, without
// blocking; a signal sent with no waiter is kept for the next one. A nil
// channel has no waiter.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Closed reports whether the session has been closed.
func (s *Session) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state >= stateClosing
}

// armExpiry starts the expiry clock of a session no receiver is attached
// to yet, so that one whose first request failed before Serve still goes.
func (s *Session) armExpiry() {
	s.mu.Lock()
	if !s.attached && s.expiry == nil {
		s.expiry = time.AfterFunc(s.opts.DisconnectDelay, s.expire)
	}
	s.mu.Unlock()
}

// expire runs DisconnectDelay after the last receiver left.
func (s *Session) expire() {
	s.mu.Lock()
	// A handed-off session stays, as a stub that tells receivers to ask
	// again, until its node ends: requests still in flight to this node
	// must not find the id unknown.
	if s.attached || s.state == stateExpired || s.handoff == hoDone {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.End(CauseTimeout)
}

// End takes the session out of the registry and then, if it was still
// open, closes it: whoever sees the context end finds it gone. Transports
// call it (as End) for a session whose lifetime is its connection's
// (websockets): it leaves the registry at once instead of after
// DisconnectDelay.
func (s *Session) End(why CloseCause) {
	s.mu.Lock()
	if s.state == stateExpired {
		s.mu.Unlock()
		return
	}
	wasOpen := s.state < stateClosing
	if wasOpen {
		s.closeCode, s.closeReason = CodeInterrupted, ReasonInterrupt
	}
	s.state = stateExpired
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.mu.Unlock()
	if s.reg != nil {
		s.reg.remove(s)
	}
	if wasOpen {
		s.cancel()
		s.opts.Observer.SessionClosed(s.transport, why, time.Duration(now()-s.created))
	}
	s.wake()
}

// CloseInfo returns the close code and reason once the session is closed
// (closed false and code 0 before). It is the one method beyond sending
// and receiving an application needs: after Recv returns ErrClosed, or
// Context is done, it tells the client's disappearance (1002) from a limit
// (3009), a shutdown (1001) or the application's own Close, for logging
// and for deciding whether to keep the user's state for a reconnect.
func (s *Session) CloseInfo() (code int, reason string, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeCode, s.closeReason, s.state >= stateClosing
}
