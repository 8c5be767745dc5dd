package transport

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/session"
)

// websocket: SockJS frames as websocket text messages. A websocket
// session lives as long as its connection; the protocol lets two
// connections share a session id, so these sessions are not found by id.

// wsReceiver writes frames to a websocket. Only the session's Serve loop
// writes messages; control frames may come from other goroutines, which
// gorilla/websocket allows.
type wsReceiver struct {
	conn    *websocket.Conn
	raw     bool // no SockJS framing (<prefix>/websocket)
	timeout time.Duration
	gone    chan struct{}
	once    sync.Once
	buf     []byte
	t       session.Transport
	obs     session.Observer
}

func (wr *wsReceiver) Gone() <-chan struct{} { return wr.gone }

func (wr *wsReceiver) markGone() { wr.once.Do(func() { close(wr.gone) }) }

func (wr *wsReceiver) WriteFrame(f *session.Frame) (bool, error) {
	deadline := time.Now().Add(wr.timeout)
	if wr.raw {
		return wr.writeRaw(f, deadline)
	}
	wr.buf = AppendFrame(wr.buf[:0], f)
	_ = wr.conn.SetWriteDeadline(deadline)
	if err := wr.conn.WriteMessage(websocket.TextMessage, wr.buf); err != nil {
		return true, err
	}
	wr.obs.FrameWritten(wr.t, f.Kind, len(f.Messages), len(wr.buf))
	if cap(wr.buf) > 64<<10 {
		wr.buf = nil // do not pin a large frame's buffer to an idle session
	}
	if f.Kind == session.FrameClose {
		closeWebSocket(wr.conn, websocket.CloseNormalClosure, "Normal closure", deadline)
		return true, nil
	}
	return false, nil
}

// writeRaw: each message is its own websocket message; heartbeats are
// pings; the close frame is a websocket close with the session's code.
func (wr *wsReceiver) writeRaw(f *session.Frame, deadline time.Time) (bool, error) {
	switch f.Kind {
	case session.FrameOpen:
		return false, nil
	case session.FrameHeartbeat:
		if err := wr.conn.WriteControl(websocket.PingMessage, nil, deadline); err != nil {
			return true, err
		}
	case session.FrameMessages:
		_ = wr.conn.SetWriteDeadline(deadline)
		n := 0
		for _, m := range f.Messages {
			if err := wr.conn.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				return true, err
			}
			n += len(m)
		}
		wr.obs.FrameWritten(wr.t, f.Kind, len(f.Messages), n)
	case session.FrameClose:
		closeWebSocket(wr.conn, f.Code, f.Reason, deadline)
		return true, nil
	}
	return false, nil
}

// CodeBrokenFraming is the websocket close code for a message that is not
// valid SockJS JSON (sockjs-node's choice).
const CodeBrokenFraming = 3000

func closeWebSocket(c *websocket.Conn, code int, reason string, deadline time.Time) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
}

func (h *Handler) webSocket(w http.ResponseWriter, r *http.Request) {
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
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered and logged
	}
	deadline := time.Now().Add(h.opts.WriteTimeout)
	if h.closing.Load() {
		closeWebSocket(conn, websocket.CloseGoingAway, session.ReasonGoingAway, deadline)
		conn.Close()
		return
	}
	s, err := h.reg.Create(t, h.requestInfo(r))
	if err != nil {
		h.limitHit(t, session.LimitSessions)
		closeWebSocket(conn, websocket.CloseTryAgainLater, "Too many sessions", deadline)
		conn.Close()
		return
	}
	go h.run(s)
	conn.SetReadLimit(int64(h.opts.MaxMessageBytes))
	rcv := &wsReceiver{conn: conn, raw: raw, timeout: h.opts.WriteTimeout, gone: make(chan struct{}), t: t, obs: h.obs}
	// The session runs on two fresh goroutines and this handler returns:
	// net/http then lets go of the request, its 4 KiB read and write
	// buffers and this goroutine's deep stack, about half of what an idle
	// websocket session would otherwise cost.
	h.active.Add(1)
	go h.readWebSocket(conn, s, rcv)
	go func() {
		defer h.active.Add(-1)
		defer conn.Close()
		s.Serve(rcv)
		why := session.ReasonServer
		select {
		case <-rcv.gone:
			why = session.ReasonClient
		default:
		}
		s.End(why)
	}()
}

// readWebSocket delivers the client's messages until the connection ends.
func (h *Handler) readWebSocket(conn *websocket.Conn, s *session.Session, rcv *wsReceiver) {
	defer rcv.markGone()
	ctx := s.Context()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				h.limitHit(s.Transport(), session.LimitMessageSize)
				s.CloseFor(session.CodeTooBig, session.ReasonTooBig, session.ReasonLimit)
				closeWebSocket(conn, websocket.CloseMessageTooBig, session.ReasonTooBig, time.Now().Add(h.opts.WriteTimeout))
			}
			return
		}
		if rcv.raw {
			if s.Deliver(ctx, []string{string(data)}) != nil {
				return
			}
			continue
		}
		if len(data) == 0 {
			continue // the protocol says empty frames are ignored
		}
		if err := validPayload(data); err != nil {
			// The protocol wants broken JSON to end the connection at
			// once; like sockjs-node, say why in a close frame first.
			h.log.Info("sockjs: websocket broken JSON, closing", "prefix", h.prefix)
			closeWebSocket(conn, CodeBrokenFraming, "Broken framing.", time.Now().Add(h.opts.WriteTimeout))
			_ = conn.Close()
			s.CloseFor(session.CodeInterrupted, "Broken framing.", session.ReasonError)
			return
		}
		// One message at a time, bounded by the receive queue's bytes:
		// while it is full this loop stops reading the socket.
		if deliverValid(ctx, s, data, h.withoutPongs) != nil {
			return
		}
	}
}
