package transport

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// Hixie-76 and Hixie-75: the websocket drafts of 2010 that Safari 5, iOS 4
// to 5.1, Opera 11 and Chrome 4 to 13 speak, and that HAProxy 1.4 setups
// still pass through. sockjs-node accepts them on the SockJS websocket
// endpoint (<prefix>/<server>/<session>/websocket); so does this server.
// gorilla/websocket speaks only RFC 6455, hence this small implementation.
//
// Handshake (76): the request carries Sec-WebSocket-Key1 and -Key2, and 8
// bytes after its headers that no Content-Length announces. The server
// answers 101 with Sec-WebSocket-Origin and -Location, then the 16-byte MD5
// of the two keys' numbers and the 8 bytes. The answer's headers are sent
// before the 8 bytes are read: HAProxy forwards them only after it saw the
// 101. Hixie-75 has no keys and no 16-byte answer.
//
// Frames: 0x00, UTF-8 text, 0xFF. A frame whose type byte has its high bit
// set carries a base-128 length and that many bytes; 0xFF 0x00 is the
// closing handshake (76 only).

// isHixie reports whether r asks for a Hixie-75/76 websocket: an upgrade
// without the Sec-WebSocket-Version and Sec-WebSocket-Key of RFC 6455.
func isHixie(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		r.Header.Get("Sec-WebSocket-Version") == "" &&
		r.Header.Get("Sec-WebSocket-Key") == ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// hixieKey is one Sec-WebSocket-Key of Hixie-76: the number its digits
// make, divided by the number of its spaces. The division must be exact
// and the result fit in 32 bits.
func hixieKey(k string) (uint32, error) {
	var n uint64
	spaces := uint64(0)
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c >= '0' && c <= '9':
			n = n*10 + uint64(c-'0')
			if n > 1<<42 { // far past what 32 bits times the spaces allow
				return 0, errors.New("key number too large")
			}
		case c == ' ':
			spaces++
		}
	}
	if spaces == 0 {
		return 0, errors.New("key without spaces")
	}
	if n%spaces != 0 || n/spaces > 0xFFFFFFFF {
		return 0, errors.New("key number not a 32-bit multiple of its spaces")
	}
	return uint32(n / spaces), nil
}

// hixieChallenge is the 16-byte answer of a Hixie-76 handshake.
func hixieChallenge(key1, key2 uint32, key3 []byte) [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:], key1)
	binary.BigEndian.PutUint32(b[4:], key2)
	copy(b[8:], key3)
	return md5.Sum(b[:])
}

// Errors of the Hixie frame reader.
var (
	errHixieClosing = errors.New("hixie: closing handshake")
)

// hixieReceiver writes SockJS frames to a Hixie connection. Only the
// session's writer writes (one pump at a time, engine's writer.go), and
// finish runs after it wrote the close frame.
type hixieReceiver struct {
	conn    net.Conn
	draft76 bool
	timeout time.Duration
	buf     []byte
	gone    chan struct{}
	once    sync.Once
	t       session.Transport
	obs     session.Observer
	failure atomic.Pointer[wsFailure]
	closing atomic.Bool // the client sent the closing handshake
	sentBye bool        // the server sent it (Serve goroutine only)
}

func (hr *hixieReceiver) Gone() <-chan struct{} { return hr.gone }

func (hr *hixieReceiver) markGone() { hr.once.Do(func() { close(hr.gone) }) }

func (hr *hixieReceiver) WriteFrame(f *engine.Frame) (bool, error) {
	_ = hr.conn.SetWriteDeadline(time.Now().Add(hr.timeout))
	if f.Kind == session.FrameClose {
		if fl := hr.failure.Load(); fl == nil || fl.frame {
			if err := hr.write(f); err != nil {
				return true, err
			}
		}
		if hr.draft76 {
			hr.sentBye = true
			_, err := hr.conn.Write([]byte{0xFF, 0x00})
			return true, err
		}
		return true, nil
	}
	return false, hr.write(f)
}

func (hr *hixieReceiver) write(f *engine.Frame) error {
	hr.buf = append(appendFrame(append(hr.buf[:0], 0x00), f), 0xFF)
	if _, err := hr.conn.Write(hr.buf); err != nil {
		return err
	}
	hr.obs.FrameWritten(hr.t, f.Kind, len(f.Messages), len(hr.buf))
	if cap(hr.buf) > 64<<10 {
		hr.buf = nil
	}
	return nil
}

// finish ends the connection: after the server's closing handshake it
// waits up to wait for the client's; a client that closed first gets the
// server's answer.
func (hr *hixieReceiver) finish(wait time.Duration) {
	switch {
	case hr.sentBye:
		t := time.NewTimer(wait)
		select {
		case <-hr.gone:
		case <-t.C:
		}
		t.Stop()
	case hr.draft76 && hr.closing.Load():
		_ = hr.conn.SetWriteDeadline(time.Now().Add(hr.timeout))
		_, _ = hr.conn.Write([]byte{0xFF, 0x00})
	}
	_ = hr.conn.Close()
}

// hixieWebSocket serves a Hixie-75/76 websocket on the SockJS endpoint.
func (h *Handler) hixieWebSocket(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, "GET") {
		return
	}
	draft76 := r.Header.Get("Sec-WebSocket-Key1") != "" || r.Header.Get("Sec-WebSocket-Key2") != ""
	var key1, key2 uint32
	if draft76 {
		var err1, err2 error
		key1, err1 = hixieKey(r.Header.Get("Sec-WebSocket-Key1"))
		key2, err2 = hixieKey(r.Header.Get("Sec-WebSocket-Key2"))
		if err := errors.Join(err1, err2); err != nil {
			h.log.Info("sockjs: hixie-76 handshake refused", "path", r.URL.Path, "err", err)
			plainError(w, http.StatusBadRequest, "Not a valid websocket request")
			return
		}
	}
	if !h.checkWebSocketOrigin(r) {
		h.log.Info("sockjs: websocket upgrade refused", "path", r.URL.Path, "status", http.StatusForbidden, "err", "origin not allowed")
		plainError(w, http.StatusForbidden, "Origin not allowed")
		return
	}
	if h.closing.Load() {
		plainError(w, http.StatusServiceUnavailable, "Server is shutting down")
		return
	}
	s, err := h.reg.Create(session.WebSocket, h.requestInfo(r))
	if err != nil {
		h.log.Warn("sockjs: session refused", "prefix", h.prefix, "transport", "websocket", "err", err)
		plainError(w, http.StatusServiceUnavailable, "Too many sessions")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.End(session.CauseError)
		plainError(w, http.StatusInternalServerError, "websocket: cannot take over the connection")
		return
	}
	if err := h.hixieHandshake(conn, brw, r, draft76, key1, key2); err != nil {
		h.log.Info("sockjs: hixie handshake failed", "path", r.URL.Path, "err", err)
		conn.Close()
		s.End(session.CauseError)
		return
	}
	go h.run(s)
	rcv := &hixieReceiver{conn: conn, draft76: draft76, timeout: h.opts.WriteTimeout, gone: make(chan struct{}), t: session.WebSocket, obs: h.obs}
	h.active.Add(1)
	go h.readHixie(brw.Reader, s, rcv)
	h.serveConnection(s, rcv)
}

// hixieHandshake answers the upgrade on the hijacked connection: headers
// first, then (76) the challenge once its 8 bytes came.
func (h *Handler) hixieHandshake(conn net.Conn, brw *bufio.ReadWriter, r *http.Request, draft76 bool, key1, key2 uint32) error {
	_ = conn.SetDeadline(time.Now().Add(h.opts.WriteTimeout))
	scheme := "ws"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "wss"
	}
	location := scheme + "://" + r.Host + r.URL.RequestURI()
	prefix, status := "WebSocket-", "HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
	if draft76 {
		prefix, status = "Sec-WebSocket-", "HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
	}
	var b strings.Builder
	b.WriteString(status)
	b.WriteString("Upgrade: WebSocket\r\nConnection: Upgrade\r\n")
	if o := r.Header.Get("Origin"); o != "" && validHeaderValue(o) {
		fmt.Fprintf(&b, "%sOrigin: %s\r\n", prefix, o)
	}
	if validHeaderValue(location) {
		fmt.Fprintf(&b, "%sLocation: %s\r\n", prefix, location)
	}
	b.WriteString("\r\n")
	if _, err := brw.WriteString(b.String()); err != nil {
		return err
	}
	if err := brw.Flush(); err != nil {
		return err
	}
	if draft76 {
		var key3 [8]byte
		if _, err := io.ReadFull(brw.Reader, key3[:]); err != nil {
			return fmt.Errorf("reading the 8-byte key: %w", err)
		}
		sum := hixieChallenge(key1, key2, key3[:])
		if _, err := conn.Write(sum[:]); err != nil {
			return err
		}
	}
	return conn.SetDeadline(time.Time{})
}

// validHeaderValue: no control characters that would split the answer.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7F {
			return false
		}
	}
	return true
}

// readHixie delivers the client's messages until the connection ends, like
// readWebSocket.
func (h *Handler) readHixie(br *bufio.Reader, s *engine.Session, rcv *hixieReceiver) {
	defer s.ConnLost(rcv)
	defer rcv.markGone()
	ctx := s.Context()
	m := h.newMsgReader(rcv.conn)
	defer m.close()
	fail := func(msg string, code int, reason string, why session.CloseCause, frame bool) {
		h.logFail(msg, code, why)
		rcv.failure.CompareAndSwap(nil, &wsFailure{code: code, reason: reason, frame: frame})
		if !frame {
			code = session.CodeInterrupted
		}
		s.CloseWith(code, reason, why)
	}
	for {
		m.done() // the last message was copied out of its buffer
		data, err := m.readHixieFrame(ctx, br)
		if err != nil {
			m.done()
		}
		if fl, ok := messageFailure(err); ok {
			// The rest of the stream cannot be framed any more: drop it
			// until the connection ends, after the close frame is out.
			if !s.Closed() {
				h.limitHit(session.WebSocket, fl.limit)
				fail(fl.log, fl.code, fl.reason, session.CauseLimit, true)
			}
			drain(br)
			return
		}
		switch {
		case errors.Is(err, errHixieClosing):
			rcv.closing.Store(true)
			return
		case err != nil:
			return
		}
		if s.Closed() {
			continue // draining until the client's closing handshake
		}
		if !utf8.Valid(data) {
			fail("sockjs: websocket text message not UTF-8, closing", CodeInvalidUTF8, reasonInvalidUTF8, session.CauseError, true)
			continue
		}
		if len(data) == 0 {
			continue
		}
		msgs, err := DecodeMessages(data)
		if err != nil {
			fail("sockjs: websocket broken JSON, closing", CodeBrokenFraming, reasonBrokenFraming, session.CauseError, false)
			continue
		}
		h.delivered(s, s.Deliver(ctx, msgs))
	}
}
