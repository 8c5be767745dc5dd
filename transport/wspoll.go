package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/engine"
)

// Idle websockets without a goroutine. gorilla/websocket reads on a
// goroutine per connection that stays parked in the socket's read while
// the client says nothing, which is most of a websocket's life: its
// stack (and the g) is the largest part of what an idle websocket
// session costs. A plain TCP websocket is instead parked in an epoll set
// of the package's own (wspoll_linux.go) while it is idle: when the
// kernel says bytes arrived, a goroutine reads what is there without
// waiting (syscall.RawConn.Read with a function that never asks to
// wait), feeds it to the frame reader below and, once the socket has
// nothing more, ends (parker, park.go). An idle connection so holds no
// goroutine, no stack and no read buffer, only its frame reader's state
// and gorilla's Conn (which still writes every frame, as on the
// goroutine path, with gorilla's least read buffer, never read).
//
// The frame reader is RFC 6455's server side, checking what gorilla
// checks (RSV bits, opcodes, masking, fragmentation, control frame
// sizes, close codes and close reasons) and answering the same way (a
// close frame with 1002, or the message gates' codes through
// handleWSMessage, message.go); messages go through the same msgReader,
// budget and payload deadline as on the goroutine path.
//
// Connections that are not a *net.TCPConn, or a wrapper of one that
// reads nothing itself (connUnwrapper), keep the reader goroutine: TLS,
// and the PROXY protocol while its reader holds bytes the kernel no
// longer has (cmd/server's proxiedConn unwraps once it holds none). So do Hixie-76 connections, and every connection where
// there is no poller (not Linux) or when Options.ReaderGoroutines
// is set.

// pollBufSize is the read buffer of a connection while it is read: taken
// from a pool when bytes arrive, given back once the socket is empty.
const pollBufSize = 4 << 10

var pollBufs = sync.Pool{New: func() any { return newSockRead(pollBufSize) }}

// errWouldBlock: the socket has nothing to read now.
var errWouldBlock = errors.New("would block")

// pollConn is a hijacked connection as gorilla's Conn sees it: writes
// and Close go to the connection (through the listener's wrapper, if
// any); reads come from its TCP socket, read by the poller's bursts; a
// past read deadline (the payload deadline's cut, msgwatch.go) and Close
// wake the connection's reader instead of a parked Read.
type pollConn struct {
	net.Conn
	wsPoll // the reader, in the same allocation
}

// connUnwrapper is a listener's connection wrapper that reads nothing
// itself (one that counts or limits connections, such as cmd/server's
// connection caps): its websockets can be parked, their bytes read from
// the connection it wraps. A wrapper that buffers what it reads (TLS)
// must not implement it, or must return nil while it holds bytes it read
// (cmd/server's PROXY protocol connections).
type connUnwrapper interface {
	UnwrapConn() net.Conn
}

// UnwrapConn: an nbConn (wsconn.go) only holds what it writes; it reads
// nothing itself.
func (c *nbConn) UnwrapConn() net.Conn { return c.Conn }

// tcpConn is the TCP connection under c's read-transparent wrappers, or
// nil.
func tcpConn(c net.Conn) *net.TCPConn {
	for range 8 { // a bound on wrappers, should one return itself
		switch w := c.(type) {
		case *net.TCPConn:
			return w
		case connUnwrapper:
			c = w.UnwrapConn()
		default:
			return nil
		}
	}
	return nil
}

// SetReadDeadline takes the payload deadline's cut (a deadline that has
// passed) and its clearing (zero); nothing else sets read deadlines on a
// parked connection. The socket's own read deadline is the reader's
// (wsPoll.active): the cut sets it in the past too, which wakes a reader
// waiting in the runtime's poller, and the reader clears or resets it.
func (c *pollConn) SetReadDeadline(t time.Time) error {
	p := &c.wsPoll
	if !p.parked.Load() {
		return c.Conn.SetReadDeadline(t)
	}
	if t.IsZero() {
		p.late.Store(false)
		return nil
	}
	if !t.After(time.Now()) {
		p.late.Store(true)
		c.wake()
		_ = c.Conn.SetReadDeadline(t)
	}
	return nil
}

// Close closes the socket and wakes its reader, which then ends: the
// kernel drops a closed socket from the epoll set without a word, and a
// read waiting in the runtime's poller returns.
func (c *pollConn) Close() error {
	err := c.Conn.Close()
	if c.parked.Load() {
		c.wake()
	}
	return err
}

// upgrade is the websocket handshake: a plain TCP connection comes out
// of it as a pollConn when the poller is on.
func (h *Handler) upgrade(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	if !h.parkWS || r.TLS != nil {
		return h.upgrader.Upgrade(w, r, nil)
	}
	// A copy of the upgrader per handshake, whose read buffer size the
	// hijack sets: gorilla allocates its read buffer after hijacking,
	// with the upgrader's size, and a parked connection never reads
	// through it.
	up := h.upgrader
	return up.Upgrade(pollHijacker{w, &up}, r, nil)
}

// parkedReadBuffer is gorilla's read buffer on a parked connection,
// which only the poller reads: the least gorilla takes (a control frame).
const parkedReadBuffer = 125

// pollHijacker hands gorilla's Upgrade a plain TCP connection wrapped as
// a pollConn, with the least read buffer; other connections pass as they
// are, with the upgrader's read buffer.
type pollHijacker struct {
	http.ResponseWriter
	up *websocket.Upgrader
}

func (w pollHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if tc := tcpConn(c); tc != nil {
		if rc, err := tc.SyscallConn(); err == nil {
			w.up.ReadBufferSize = parkedReadBuffer
			return &pollConn{Conn: c, wsPoll: wsPoll{parker: parker{rc: rc}}}, brw, nil
		}
	}
	return c, brw, nil
}

func (w pollHijacker) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wsPoll reads one parked websocket: the state of its frame reader
// between bursts, and the burst's exclusion.
type wsPoll struct {
	parker
	h    *Handler
	s    *engine.Session
	rcv  *wsReceiver
	late atomic.Bool // the payload deadline cut the message being read

	lastPark int64 // monoNow when a burst last parked, 0: never

	// The frame reader, used by one burst at a time.
	hdr      [14]byte
	hn       int   // header bytes in hdr
	inFrame  bool  // the header is read, left payload bytes follow
	op       int   // the frame's opcode
	fin      bool  // the frame's FIN bit
	left     int64 // payload bytes of the frame still to come
	mask     [4]byte
	mpos     int
	ctl      []byte // a control frame's payload
	inMsg    bool   // a data message is being read (between its frames)
	mt       int    // its type
	discard  bool   // drop the rest of the message (over the size limit)
	draining bool   // drop everything until the connection ends
}

// parkWebSocket reads conn's websocket messages from the poller; false
// when it cannot (the caller then reads on a goroutine).
func (h *Handler) parkWebSocket(conn *websocket.Conn, s *engine.Session, rcv *wsReceiver) bool {
	pc, ok := conn.NetConn().(*pollConn)
	if !ok {
		return false
	}
	p := &pc.wsPoll
	p.h, p.s, p.rcv = h, s, rcv
	p.parked.Store(true)
	if err := p.register(pc); err != nil {
		p.parked.Store(false)
		h.log.Warn("sockjs: websocket not parked in the poller, reading on a goroutine", "err", err)
		return false
	}
	return true
}

// wake makes sure a burst reads the connection.
func (c *pollConn) wake() { c.parker.wake(c) }

// activeLinger is how long a websocket whose client sends keeps its
// reader goroutine after the client's last bytes (between one and two
// of it): a client that sends again within it (an echo, a chat, a game)
// is read the way gorilla's reader goroutine reads, waiting in the
// runtime's poller, rather than a goroutine started, and the socket
// taken out of and put back in the epoll set, for each of its messages.
// An idle connection still holds no goroutine once it passed.
const activeLinger = time.Second

// burst reads until the socket has nothing more, then parks it, or until
// the connection ends. A connection woken again within activeLinger of
// its last park stays read by this goroutine (active) until its client
// is quiet for activeLinger.
func (c *pollConn) burst() {
	p := &c.wsPoll
	var r *sockRead
	defer func() {
		if r != nil {
			pollBufs.Put(r)
		}
	}()
	if p.lastPark != 0 && monoNow()-p.lastPark < int64(activeLinger) && p.disarm() == nil {
		r = pollBufs.Get().(*sockRead)
		if c.active(r) {
			return // ended
		}
	}
	for {
		p.checkLate()
		if r == nil {
			r = pollBufs.Get().(*sockRead)
		}
		n, err := p.read(r)
		if n > 0 {
			if p.feed(r.b[:n]) {
				p.end()
				return
			}
			continue
		}
		switch {
		case errors.Is(err, errWouldBlock):
			// Idle: the buffer goes back before the burst parks.
			pollBufs.Put(r)
			r = nil
			p.lastPark = monoNow()
			if p.park() {
				return
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The payload deadline's cut (SetReadDeadline) came
			// after the socket's deadline was cleared: checkLate
			// sees the cut.
			_ = c.Conn.SetReadDeadline(time.Time{})
		default:
			p.end()
			return
		}
	}
}

// active reads the connection, out of the epoll set (disarmed), waiting
// in the runtime's poller, until its client sent nothing for
// activeLinger; then it puts the socket back in the set, and false
// says the burst goes on as a parked connection's (which reads what
// came meanwhile and parks). true: the connection ended.
//
// Its timer is the socket's read deadline, set once per activeLinger
// rather than per read; the payload deadline's cut moves it to the past
// (SetReadDeadline), and checkLate, after every reset, sees the cut.
func (c *pollConn) active(r *sockRead) bool {
	p := &c.wsPoll
	busy := false
	_ = c.Conn.SetReadDeadline(time.Now().Add(activeLinger))
	for {
		p.checkLate()
		n, err := p.readWait(r)
		if n > 0 {
			busy = true
			if p.feed(r.b[:n]) {
				p.end()
				return true
			}
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			p.end()
			return true
		}
		if !busy && !p.late.Load() {
			err := p.rearm()
			if err == nil {
				_ = c.Conn.SetReadDeadline(time.Time{})
				return false
			}
			// Read on: the connection keeps its goroutine.
			p.h.log.Debug("sockjs: websocket not parked again in the poller", "err", err)
		}
		busy = false
		_ = c.Conn.SetReadDeadline(time.Now().Add(activeLinger))
	}
}

// end: the client left, closed or broke the protocol, or the pump closed
// the connection. As readWebSocket's end.
func (p *wsPoll) end() {
	p.state.Store(pollEnded)
	p.unregister()
	p.rcv.msg.close()
	p.rcv.markGone()
	p.s.ConnLost(p.rcv)
}

// checkLate refuses the message being read if the payload deadline cut
// it, as a read that timed out does on the goroutine path.
func (p *wsPoll) checkLate() {
	if !p.late.Load() {
		return
	}
	if !p.inMsg || p.discard || p.draining {
		p.late.Store(false)
		return
	}
	p.refuse(errMsgTimeout)
}

// refuse ends the message being read with a gate's err.
func (p *wsPoll) refuse(err error) {
	m := &p.rcv.msg
	err = m.fail(err)
	p.h.handleWSMessage(p.s.Context(), p.s, p.rcv, p.mt, nil, err)
	m.done()
	if errors.Is(err, errTooBig) {
		p.discard = true
		return
	}
	// The message cannot be framed any more: drop what comes until the
	// pump closes the connection after the close frames.
	p.draining = true
}

// protocolError answers a frame gorilla would refuse as it does: a close
// frame with 1002 and the end of reading.
func (p *wsPoll) protocolError(msg string) bool {
	data := websocket.FormatCloseMessage(websocket.CloseProtocolError, msg)
	if len(data) > 125 {
		data = data[:125]
	}
	if !p.rcv.closeSent.Swap(true) {
		_ = p.rcv.conn.WriteControl(websocket.CloseMessage, data, time.Now().Add(p.h.opts.WriteTimeout))
		p.flush()
	}
	p.h.log.Debug("sockjs: websocket protocol error", "err", msg)
	return true
}

// feed reads the frames in b; true when reading ends.
func (p *wsPoll) feed(b []byte) bool {
	for len(b) > 0 && !p.draining {
		if !p.inFrame {
			var done bool
			b, done = p.header(b)
			if done {
				return true
			}
			if !p.inFrame {
				return false // the header's rest comes later
			}
		} else {
			k := int(min(int64(len(b)), p.left))
			chunk := b[:k]
			b = b[k:]
			p.mpos = unmask(p.mask, p.mpos, chunk)
			p.left -= int64(k)
			if p.op >= 8 {
				p.ctl = append(p.ctl, chunk...)
			} else if !p.discard {
				p.payload(chunk)
			}
		}
		if p.inFrame && p.left == 0 {
			p.inFrame = false
			if p.frameEnd() {
				return true
			}
		}
	}
	return false
}

// header reads a frame header from b, returning the rest; done when the
// header is refused.
func (p *wsPoll) header(b []byte) (rest []byte, done bool) {
	if p.hn == 0 && len(b) >= 6 && b[1]&0x7f < 126 {
		// The common case, a short frame's whole header at hand: read
		// in place rather than gathered into hdr (a few per cent of a
		// small message's instructions).
		p.hdr[0], p.hdr[1] = b[0], b[1]
		if msg := p.checkHeader(); msg != "" {
			return b[2:], p.protocolError(msg)
		}
		p.left = int64(b[1] & 0x7f)
		p.mask = [4]byte(b[2:6])
		return p.begin(b[6:]), false
	}
	need := 2
	for {
		if p.hn >= 2 {
			need = 2 + 4
			switch p.hdr[1] & 0x7f {
			case 126:
				need += 2
			case 127:
				need += 8
			}
		}
		if p.hn == need {
			break
		}
		if len(b) == 0 {
			return b, false
		}
		k := copy(p.hdr[p.hn:need], b)
		p.hn += k
		b = b[k:]
		if p.hn == 2 {
			if msg := p.checkHeader(); msg != "" {
				return b, p.protocolError(msg)
			}
		}
	}
	h := p.hdr[:p.hn]
	p.hn = 0
	switch n := h[1] & 0x7f; n {
	case 126:
		p.left = int64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		p.left = int64(binary.BigEndian.Uint64(h[2:]))
		if p.left < 0 {
			return b, p.protocolError("frame length over 2^63")
		}
	default:
		p.left = int64(n)
	}
	copy(p.mask[:], h[len(h)-4:])
	return p.begin(b), false
}

// begin starts the frame whose header is read (hdr's first two bytes,
// left and mask set): a data frame that begins a message begins the
// message too. b is what follows the header.
func (p *wsPoll) begin(b []byte) []byte {
	p.op, p.fin = int(p.hdr[0]&0xf), p.hdr[0]&0x80 != 0
	p.mpos = 0
	p.inFrame = true
	if p.op == websocket.TextMessage || p.op == websocket.BinaryMessage {
		// A message begins: its first buffer, and its payload deadline
		// unless all of it is at hand (msgReader.arm).
		p.inMsg, p.mt, p.discard = true, p.op, false
		m := &p.rcv.msg
		if !p.fin || p.left > int64(len(b)) {
			m.arm()
		}
		m.begin(time.Time{})
	}
	if p.op <= websocket.BinaryMessage && !p.discard &&
		int64(p.rcv.msg.size())+p.left > int64(p.rcv.msg.limit) {
		// The header says the frame takes the message past the limit:
		// refused now, with 1009, rather than once a limit's worth of
		// its bytes was read into buffers reserved from the message
		// budget. Many such messages at once would otherwise hold the
		// budget, and a client's 1009 could become a 1013 or, past
		// the payload deadline, a 1008. The rest of the message is
		// dropped as it comes, outside the budget and the deadline.
		p.refuse(errTooBig)
	}
	return b
}

// checkHeader checks a frame's first two bytes as gorilla does,
// returning what is wrong, or "".
func (p *wsPoll) checkHeader() string {
	op, fin := int(p.hdr[0]&0xf), p.hdr[0]&0x80 != 0
	if p.hdr[0]&0x70 == 0 && p.hdr[1]&0x80 != 0 && (op == 0) == p.inMsg &&
		(op == websocket.TextMessage || op == websocket.BinaryMessage || op == 0) {
		return "" // a data frame where one may come, the usual case
	}
	var errs []string
	if p.hdr[0]&0x70 != 0 {
		errs = append(errs, "RSV set")
	}
	switch op {
	case websocket.CloseMessage, websocket.PingMessage, websocket.PongMessage:
		if p.hdr[1]&0x7f > 125 {
			errs = append(errs, "len > 125 for control")
		}
		if !fin {
			errs = append(errs, "FIN not set on control")
		}
	case websocket.TextMessage, websocket.BinaryMessage:
		if p.inMsg {
			errs = append(errs, "data before FIN")
		}
	case 0:
		if !p.inMsg {
			errs = append(errs, "continuation after FIN")
		}
	default:
		errs = append(errs, "bad opcode "+strconv.Itoa(op))
	}
	if p.hdr[1]&0x80 == 0 {
		errs = append(errs, "bad MASK")
	}
	return strings.Join(errs, ", ")
}

// payload adds a data frame's bytes to the message, through the gates.
func (p *wsPoll) payload(chunk []byte) {
	m := &p.rcv.msg
	if m.size()+len(chunk) > m.limit {
		p.refuse(errTooBig)
		return
	}
	if err := m.add(p.s.Context(), chunk); err != nil {
		p.refuse(err)
	}
}

// frameEnd handles a frame read whole; true when reading ends.
func (p *wsPoll) frameEnd() bool {
	if p.op >= 8 {
		payload := p.ctl
		p.ctl = nil
		return p.control(payload)
	}
	if !p.fin {
		return false
	}
	p.inMsg = false
	if p.discard {
		p.discard = false
		return false
	}
	m := &p.rcv.msg
	if err := m.disarm(); err != nil {
		p.refuse(err)
		return false
	}
	p.h.handleWSMessage(p.s.Context(), p.s, p.rcv, p.mt, m.bytes(), nil)
	m.done() // every message was copied out of its buffer
	return false
}

// control handles a control frame as gorilla's handlers on the goroutine
// path do; true when reading ends (the client's close frame).
func (p *wsPoll) control(payload []byte) bool {
	deadline := time.Now().Add(p.h.opts.WriteTimeout)
	switch p.op {
	case websocket.PingMessage:
		// As gorilla's default ping handler: an error writing the pong
		// shows on the next read or write. The pong must not wait in
		// the connection for the session's next frame.
		if p.rcv.conn.WriteControl(websocket.PongMessage, payload, deadline) == nil {
			p.flush()
		}
	case websocket.PongMessage:
		if p.h.wsRTT != nil {
			_ = p.rcv.pong(string(payload))
		}
	case websocket.CloseMessage:
		code := websocket.CloseNormalClosure
		if len(payload) >= 2 {
			code = int(binary.BigEndian.Uint16(payload))
			if !validCloseCode(code) {
				return p.protocolError("bad close code " + strconv.Itoa(code))
			}
			if !utf8.Valid(payload[2:]) {
				return p.protocolError("invalid utf8 payload in close frame")
			}
		}
		// Answer with the client's code, unless ours went first.
		_ = p.rcv.sendClose(code, "", deadline)
		return true
	}
	return false
}

// flush writes what the connection holds of the control frames the
// reader wrote (wsconn.go); an error shows on the next read or write.
func (p *wsPoll) flush() {
	if p.rcv.nb != nil {
		_ = p.rcv.nb.Flush()
	}
}

// validCloseCode: the codes a client may send (gorilla's list).
func validCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}
