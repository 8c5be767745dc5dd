package transport

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// websocket: SockJS frames as websocket text messages. A websocket
// session lives as long as its connection; the protocol lets two
// connections share a session id, so these sessions are not found by id.

// Websocket close codes this server sends besides the session's own.
const (
	// CodeBrokenFraming is the websocket close code for a message that is
	// not valid SockJS JSON (sockjs-node's choice).
	CodeBrokenFraming = 3000
	// CodeInvalidUTF8 (RFC 6455 1007): a text message that is not UTF-8.
	CodeInvalidUTF8 = websocket.CloseInvalidFramePayloadData
	// CodeUnsupportedData (RFC 6455 1003): a binary message that is not
	// UTF-8 text, which no SockJS message can be.
	CodeUnsupportedData = websocket.CloseUnsupportedData

	reasonBrokenFraming = "Broken framing."
	reasonInvalidUTF8   = "Invalid UTF-8"
	reasonBinary        = "Binary data is not UTF-8 text"
)

// wsFailure is how the connection ends when the client broke a rule: the
// websocket close code and reason, and whether the session's c[code,reason]
// frame goes first (SockJS endpoint only).
type wsFailure struct {
	code   int
	reason string
	frame  bool
}

// wsReceiver writes frames to a websocket. Only the session's writer (one
// pump at a time, engine's writer.go) writes messages; the reader goroutine only answers close frames, and
// gorilla/websocket sends nothing after a close frame.
//
// It is most of what an idle websocket session keeps, so it keeps what
// its handler knows (timeouts, observers) there, its gone channel only
// once someone waits for it, and no frame buffer between frames.
//
// The fields a frame written now reads come first, together with the
// writer's part of rtt: a hub fan-out reaches a cold receiver per
// delivery, and its fields spread over four cache lines were a third of
// WriteFrameNow's and its callers' own CPU (perf annotate: the loads of
// raw and the ping state).
type wsReceiver struct {
	nb        *nbConn // the connection gorilla writes to; nil: gorilla's own (TLS)
	h         *Handler
	raw       bool // no SockJS framing (<prefix>/websocket)
	t         session.Transport
	rtt       wsRTT // websocket ping round trips (wsping.go)
	conn      *websocket.Conn
	gone      lazyGone
	failure   atomic.Pointer[wsFailure]
	closeSent atomic.Bool
	msg       msgReader    // the reader goroutine's (message.go)
	pingOut   atomic.Int64 // stamp of the ping whose pong counts, 0: none
}

func (wr *wsReceiver) Gone() <-chan struct{} { return wr.gone.channel() }

// GoneNow implements engine's goneReporter: the gone channel is not
// made to ask.
func (wr *wsReceiver) GoneNow() bool { return wr.gone.marked.Load() }

func (wr *wsReceiver) markGone() { wr.gone.mark() }

// lazyGone is a receiver's gone channel, made by the first to wait for
// it: an idle connection that no one waits on keeps none (96 bytes).
type lazyGone struct {
	mu     sync.Mutex
	ch     chan struct{}
	marked atomic.Bool // written under mu
}

func (g *lazyGone) channel() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(chan struct{})
		if g.marked.Load() {
			close(g.ch)
		}
	}
	return g.ch
}

func (g *lazyGone) mark() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.marked.Swap(true) {
		return
	}
	if g.ch != nil {
		close(g.ch)
	}
}

// frameBufs are the buffers frames are encoded in, held only while one
// is written.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// encodeFrame encodes f in a pooled buffer; putFrameBuf gives it back.
func encodeFrame(f *engine.Frame) *[]byte {
	bp := frameBufs.Get().(*[]byte)
	*bp = appendFrame((*bp)[:0], f)
	return bp
}

func putFrameBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 { // a large frame's buffer is not kept
		frameBufs.Put(bp)
	}
}

// WriteFrame writes f and waits until the connection took all of it.
func (wr *wsReceiver) WriteFrame(f *engine.Frame) (bool, error) {
	done, err := wr.writeFrame(f)
	if err == nil && wr.nb != nil {
		err = wr.nb.Flush()
	}
	if err != nil {
		return true, err
	}
	return done, nil
}

// WritesNow implements engine.NowWriter: a connection with a file
// descriptor (not TLS) takes frames without waiting.
func (wr *wsReceiver) WritesNow() bool { return wr.nb != nil }

// WriteFrameNow implements engine.NowWriter: f goes to the socket with
// one non-blocking write; what it did not take is held until Flush.
func (wr *wsReceiver) WriteFrameNow(f *engine.Frame) (held bool, err error) {
	if !wr.raw {
		if wire, sizes, ok := sharedWire(f); ok {
			// A hub delivery: its frame's bytes, straight to the
			// connection (wsprepared.go), no deadline to set unless
			// a ping is due.
			held, err := wr.nb.WriteData(wire)
			if err != nil {
				return false, err
			}
			wr.observeShared(f.Kind, sizes)
			if wr.h.wsRTT == nil {
				return held, nil
			}
			if now := pingStamp(); wr.pingDue(now) {
				if err := wr.writePing(now, time.Now().Add(wr.h.opts.WriteTimeout)); err != nil {
					return false, err
				}
				return wr.nb.Held(), nil
			}
			return held, nil
		}
	}
	if _, err := wr.writeFrame(f); err != nil {
		return false, err
	}
	return wr.nb.Held(), nil
}

// Flush implements engine.NowWriter.
func (wr *wsReceiver) Flush() error { return wr.nb.Flush() }

// writeFrame has gorilla write f: with an nbConn, without waiting for the
// client (what the socket did not take is held until a Flush).
func (wr *wsReceiver) writeFrame(f *engine.Frame) (bool, error) {
	if f.Kind == session.FrameClose {
		return true, wr.writeClose(f, time.Now().Add(wr.h.opts.WriteTimeout))
	}
	if wr.raw {
		return wr.writeRaw(f, time.Now().Add(wr.h.opts.WriteTimeout))
	}
	// An nbConn's writes never wait (its Flush has its own deadline), so
	// its frames need no deadline, nor the clock read for one; a ping
	// after the frame (afterFrame) makes its own.
	var deadline time.Time
	if wr.nb == nil {
		deadline = time.Now().Add(wr.h.opts.WriteTimeout)
		_ = wr.conn.SetWriteDeadline(deadline)
	}
	if p := sharedFrame(f); p != nil {
		// A message many sessions write (a hub publish): its frame
		// was encoded once, for all of them (wsprepared.go).
		var err error
		if wr.nb != nil {
			_, err = wr.nb.WriteData(p.wire)
		} else {
			err = wr.conn.WritePreparedMessage(p.pm)
		}
		if err != nil {
			return true, err
		}
		wr.h.obs.FrameWritten(wr.t, f.Kind, 1, p.size)
	} else {
		bp := encodeFrame(f)
		err := wr.conn.WriteMessage(websocket.TextMessage, *bp)
		n := len(*bp)
		putFrameBuf(bp) // gorilla copied it
		if err != nil {
			return true, err
		}
		wr.h.obs.FrameWritten(wr.t, f.Kind, len(f.Messages), n)
	}
	if err := wr.afterFrame(deadline); err != nil {
		return true, err
	}
	return false, nil
}

// writeRaw: each message is its own websocket message; heartbeats are
// pings, stamped (and their pongs measured) when round trips are observed.
func (wr *wsReceiver) writeRaw(f *engine.Frame, deadline time.Time) (bool, error) {
	switch f.Kind {
	case session.FrameHeartbeat:
		var err error
		if wr.h.wsRTT != nil {
			err = wr.writePing(pingStamp(), deadline)
		} else {
			err = wr.conn.WriteControl(websocket.PingMessage, nil, deadline)
		}
		if err != nil {
			return true, err
		}
		return false, nil
	case session.FrameMessages:
		_ = wr.conn.SetWriteDeadline(deadline)
		n := 0
		for _, m := range f.Messages {
			// A text message must be UTF-8: the application's invalid
			// bytes become U+FFFD, as in SockJS frames.
			if !utf8.ValidString(m) {
				m = strings.ToValidUTF8(m, "\uFFFD")
			}
			if err := wr.conn.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				return true, err
			}
			n += len(m)
		}
		wr.h.obs.FrameWritten(wr.t, f.Kind, len(f.Messages), n)
	}
	// The open frame (not written on raw websockets) and messages.
	if err := wr.afterFrame(deadline); err != nil {
		return true, err
	}
	return false, nil
}

// writeClose ends the connection's side of the session: the SockJS close
// frame (not on raw websockets), then a websocket close frame, with the
// session's code on raw websockets, 1000 on SockJS ones, or the code of
// the rule the client broke.
func (wr *wsReceiver) writeClose(f *engine.Frame, deadline time.Time) error {
	fl := wr.failure.Load()
	if !wr.raw && (fl == nil || fl.frame) {
		bp := encodeFrame(f)
		_ = wr.conn.SetWriteDeadline(deadline)
		err := wr.conn.WriteMessage(websocket.TextMessage, *bp)
		n := len(*bp)
		putFrameBuf(bp)
		if err != nil {
			return err
		}
		wr.h.obs.FrameWritten(wr.t, f.Kind, 0, n)
	}
	code, reason := websocket.CloseNormalClosure, "Normal closure"
	switch {
	case fl != nil:
		code, reason = fl.code, fl.reason
	case wr.raw:
		code, reason = f.Code, f.Reason
	}
	return wr.sendClose(code, reason, deadline)
}

// sendClose writes a close frame, once: the first of the server's and the
// answer to the client's wins.
func (wr *wsReceiver) sendClose(code int, reason string, deadline time.Time) error {
	if wr.closeSent.Swap(true) {
		return nil
	}
	err := wr.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
	if err == nil && wr.nb != nil {
		err = wr.nb.Flush()
	}
	return err
}

// finish closes the TCP connection once the close handshake is done: after
// the server's close frame, it waits up to wait for the client's answer,
// so that the answer does not meet a reset (which clients report as an
// error rather than a clean close).
func (wr *wsReceiver) finish(wait time.Duration) {
	if wr.closeSent.Load() {
		t := time.NewTimer(wait)
		select {
		case <-wr.Gone(): // the reader saw the client's close frame, or the end
		case <-t.C:
		}
		t.Stop()
	}
	_ = wr.conn.Close()
}

// refuse closes a connection no session was made for, with a close frame.
func (wr *wsReceiver) refuse(code int, reason string, deadline time.Time) {
	closeWebSocket(wr.conn, code, reason, deadline)
	if wr.nb != nil {
		_ = wr.nb.Flush()
	}
	wr.conn.Close()
}

func closeWebSocket(c *websocket.Conn, code int, reason string, deadline time.Time) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
}

func (h *Handler) webSocket(w http.ResponseWriter, r *http.Request) {
	if isHixie(r) {
		h.hixieWebSocket(w, r)
		return
	}
	h.serveWebSocket(w, r, false)
}

func (h *Handler) rawWebSocket(w http.ResponseWriter, r *http.Request) {
	h.serveWebSocket(w, r, true)
}

func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request, raw bool) {
	if !allowMethods(w, r, "GET") {
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		// Proxies that rewrite Connection end up here; the client will
		// fall back to another transport.
		plainError(w, http.StatusBadRequest, "Not a valid websocket request")
		return
	}
	t := session.WebSocket
	if raw {
		t = session.RawWebSocket
	}
	if h.refuseRequestInfo(w, r, t) {
		return
	}
	// The connection's writes never wait (wsconn.go): whoever writes
	// then flushes, waiting up to the write timeout.
	hj := &nbHijacker{ResponseWriter: w, timeout: h.opts.WriteTimeout}
	conn, err := h.upgrade(hj, r)
	if err != nil {
		return // the upgrader answered and logged
	}
	rcv := &wsReceiver{conn: conn, h: h, raw: raw, t: t}
	if hj.conn != nil {
		rcv.nb = hj.conn
		if err := rcv.nb.Flush(); err != nil { // the handshake's answer
			conn.Close()
			return
		}
	}
	deadline := time.Now().Add(h.opts.WriteTimeout)
	if h.closing.Load() {
		rcv.refuse(websocket.CloseGoingAway, session.ReasonGoingAway, deadline)
		return
	}
	s, err := h.reg.Create(t, h.requestInfo(r))
	if err != nil {
		h.limitHit(t, session.LimitSessions)
		rcv.refuse(websocket.CloseTryAgainLater, "Too many sessions", deadline)
		return
	}
	go h.run(s)
	rcv.msg = h.newMsgReader(conn)
	// The session runs on a reader goroutine (and a writer only while
	// there is something to write) and this handler returns: net/http
	// then lets go of the request, its 4 KiB read and write buffers and
	// this goroutine's deep stack, about half of what an idle websocket
	// session would otherwise cost. A parked connection (wspoll.go) has
	// no reader goroutine either while its client says nothing, and
	// handles its control frames itself.
	h.active.Add(1)
	if !h.parkWebSocket(conn, s, rcv) {
		h.readerHandlers(conn, rcv)
		go h.readWebSocket(conn, s, rcv)
	}
	h.serveConnection(s, rcv)
}

// readerHandlers sets the handlers gorilla calls on the reader goroutine
// for control frames (a parked connection handles its own, wspoll.go).
func (h *Handler) readerHandlers(conn *websocket.Conn, rcv *wsReceiver) {
	if h.wsRTT != nil {
		conn.SetPongHandler(rcv.pong)
	}
	if rcv.nb != nil {
		// gorilla's own ping handler, and a flush: the pong must not
		// wait in the connection for the session's next frame.
		conn.SetPingHandler(func(m string) error {
			err := conn.WriteControl(websocket.PongMessage, []byte(m), time.Now().Add(h.opts.WriteTimeout))
			if err == nil {
				err = rcv.nb.Flush()
			}
			var ne net.Error
			if err == websocket.ErrCloseSent || errors.As(err, &ne) {
				return nil // the reader sees the end
			}
			return err
		})
	}
	conn.SetCloseHandler(func(code int, _ string) error {
		// Answer the client's close with its code, unless ours went
		// first; either way the reader then ends.
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		_ = rcv.sendClose(code, "", time.Now().Add(h.opts.WriteTimeout))
		return nil
	})
}

// errTooBig: a message over MaxMessageBytes.
var errTooBig = errors.New("message over the size limit")

// connReceiver is a receiver whose session lives as long as its connection
// (RFC 6455 and Hixie websockets): after the close frame it waits, up to
// CloseWait, for the client's close before the connection ends.
type connReceiver interface {
	engine.Receiver
	finish(wait time.Duration)
}

// serveConnection writes the open frame to rcv and leaves the session's
// frames to be written as they come (engine.Session.ServeConn): no goroutine
// waits for them. Once the close frame was written, the connection is
// finished and the session taken out of the registry at once (no
// disconnect delay: a websocket session cannot be resumed). The session
// is counted in h.active from before this call until then.
func (h *Handler) serveConnection(s *engine.Session, rcv connReceiver) {
	s.ServeConn(rcv, func() {
		defer h.active.Add(-1)
		rcv.finish(h.opts.CloseWait)
		why := session.CauseServer
		select {
		case <-rcv.Gone():
			why = session.CauseClient
		default:
		}
		s.End(why)
	})
}

// readWebSocket delivers the client's messages until the connection ends.
// After the session closed it goes on reading (and dropping) until the
// client's close frame, so that the close handshake completes.
func (h *Handler) readWebSocket(conn *websocket.Conn, s *engine.Session, rcv *wsReceiver) {
	// The client left or the connection broke: the session closes with
	// 1002 (ConnLost, as for a streaming answer), and the pump finishes
	// the connection.
	defer s.ConnLost(rcv)
	defer rcv.markGone()
	ctx := s.Context()
	defer rcv.msg.close()
	for {
		mt, data, err := readWSMessage(ctx, conn, &rcv.msg)
		h.handleWSMessage(ctx, s, rcv, mt, data, err)
		rcv.msg.done() // every message was copied out of its buffer
		if errors.Is(err, errMsgTimeout) || errors.Is(err, errMsgBudget) {
			// The message cannot be framed any more: drop what comes
			// until the pump closes the connection after the close
			// frames (within CloseWait). Returning now would mark the
			// client gone, and the close frames would not be written.
			drain(conn.NetConn())
			return
		}
		if err != nil && !errors.Is(err, errTooBig) {
			return
		}
	}
}

// handleWSMessage applies one message read by readWebSocket (or the error
// reading it) to the session.
func (h *Handler) handleWSMessage(ctx context.Context, s *engine.Session, rcv *wsReceiver, mt int, data []byte, err error) {
	if err != nil {
		if fl, ok := messageFailure(err); ok && !s.Closed() {
			h.limitHit(s.Transport(), fl.limit)
			h.wsFail(s, rcv, fl.log, fl.code, fl.reason, session.CauseLimit, true)
		}
		return
	}
	if s.Closed() {
		return // draining until the client's close frame
	}
	if !utf8.Valid(data) {
		if mt == websocket.TextMessage {
			h.wsFail(s, rcv, "sockjs: websocket text message not UTF-8, closing", CodeInvalidUTF8, reasonInvalidUTF8, session.CauseError, true)
		} else {
			h.wsFail(s, rcv, "sockjs: websocket binary message not UTF-8, closing", CodeUnsupportedData, reasonBinary, session.CauseError, true)
		}
		return
	}
	if rcv.raw {
		// Deliver waits while the receive queue is full: this loop
		// then stops reading the socket. After a close it returns at
		// once and the loop drains until the client's close frame.
		h.delivered(s, s.Deliver(ctx, []string{string(data)}))
		return
	}
	if len(data) == 0 {
		return // the protocol says empty frames are ignored
	}
	// Bounded by the receive queue's bytes: while it is full this loop
	// stops reading the socket.
	err = deliverPayload(ctx, h, s, data)
	if err == ErrBrokenJSON || err == ErrNoPayload {
		// The protocol wants broken JSON to end the connection at
		// once; like sockjs-node, say why in a close frame (and no
		// SockJS frame) first. Nothing of the message was delivered.
		h.wsFail(s, rcv, "sockjs: websocket broken JSON, closing", CodeBrokenFraming, reasonBrokenFraming, session.CauseError, false)
		return
	}
	h.delivered(s, err)
}

// wsFail closes the session because the client broke a rule: the session's
// writer writes the close frames (so nothing is written after them)
// and then waits for the client's close.
func (h *Handler) wsFail(s *engine.Session, rcv *wsReceiver, msg string, code int, reason string, why session.CloseCause, frame bool) {
	h.logFail(msg, code, why)
	rcv.failure.CompareAndSwap(nil, &wsFailure{code: code, reason: reason, frame: frame})
	sessCode := code
	if !frame {
		sessCode = session.CodeInterrupted
	}
	s.CloseWith(sessCode, reason, why)
}
