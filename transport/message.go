package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/session"
)

// Websocket and Hixie messages are, besides send bodies (body.go), where
// a client puts bytes into the server's memory, and a connection may hold
// a message for as long as its client takes to send the rest. So each
// message is read in pieces through two gates:
//
//   - Its buffer. The first msgSmall (1 KiB) bytes of a message go into a
//     pooled buffer outside any budget: a per-connection allowance like
//     gorilla's own read buffer, bounded by the number of connections. A
//     longer message grows into buffers whose whole capacity is reserved
//     from the service's MessageBudget before it is allocated, never the
//     size a frame header declares. When the budget is in use the
//     message waits for it, at most until its deadline, and then the
//     connection is closed with 1013 (CodeServerBusy): the server, not
//     the client, is short, and a client may retry later.
//   - A deadline (MessageReadTimeout). Once a message has begun, its
//     last byte, and any wait for the budget, must come within it, else
//     the connection is closed with 1008 (CodeMessageTimeout). Idle
//     connections between messages have no deadline: heartbeats keep
//     them. The Handler's msgWatcher keeps the deadlines (msgwatch.go):
//     a message is cut between the timeout and a tenth more after its
//     first byte. Delivery to the application is not timed (it waits
//     for the receive queue, which is the back-pressure a slow
//     application exerts), and the message's buffer stays reserved
//     until its messages are queued, as a send body's does.
//
// The message budget is a BodyBudget of its own, not the send bodies'
// one: a websocket flood must not starve the HTTP transports' sends (the
// fallback of clients whose proxies break websockets), nor a flood of
// sends the websockets. The process holds at most the sum of the two.

// Defaults for the message options.
const (
	// DefaultMessageBudgetBytes is 16 MiB: 16 messages of the default
	// MaxMessageBytes at once, and what lets 5,000 sockets that each
	// send half of a 1 MB frame grow the server by less than 100 MB
	// (docs/limits.md). Servers whose clients send many large messages
	// at once raise it.
	DefaultMessageBudgetBytes = 16 << 20
	DefaultMessageReadTimeout = 10 * time.Second
)

// Close codes of the message gates.
const (
	// CodeMessageTimeout (RFC 6455 1008, policy violation): a message
	// not received within MessageReadTimeout of its first byte.
	CodeMessageTimeout = 1008
	// CodeServerBusy (RFC 6455 1013, try again later): the message
	// budget stayed in use until the message's deadline.
	CodeServerBusy = websocket.CloseTryAgainLater

	reasonMessageTimeout = "Message not received in time"
	reasonServerBusy     = "Server busy, try again later"
)

// Errors of the message reader, besides errTooBig (websocket.go).
var (
	errMsgTimeout = errors.New("message not received in time")
	errMsgBudget  = errors.New("message budget in use until the deadline")
	// errAtLimit: the message's buffer holds limit bytes; one more is
	// errTooBig.
	errAtLimit = errors.New("message at the size limit")
)

func (o *Options) messageDefaults() {
	if o.MessageBudget == nil {
		o.MessageBudget = NewBodyBudget(DefaultMessageBudgetBytes)
	}
	if o.MessageReadTimeout <= 0 {
		o.MessageReadTimeout = DefaultMessageReadTimeout
	}
}

// msgSmall is the size of the pooled buffers every message starts in,
// outside the budget: like gorilla's read buffer (ReadBufferSize), a
// fixed cost per connection, so that short messages pass even while the
// budget is exhausted, and cost no budget bookkeeping. Messages grow by
// doubling, and the buffers of 2 to 64 KiB (msgPooledMax) are pooled
// too, one pool per size, so that reading mid-sized messages allocates
// nothing; a pool only takes back a buffer of its exact size, so it
// never keeps a larger message's buffer.
const (
	msgSmall     = 1 << 10
	msgPools     = 7 // 1, 2, 4, 8, 16, 32, 64 KiB
	msgPooledMax = msgSmall << (msgPools - 1)
)

var msgBufs [msgPools]sync.Pool

func init() {
	for i := range msgBufs {
		size := msgSmall << i
		msgBufs[i].New = func() any { b := make([]byte, 0, size); return &b }
	}
}

// poolSizeFor is the smallest pooled size that holds n bytes (the largest
// if none does): a connection's next message that outgrows its first
// buffer grows at once to what its last message took, in one step of
// reservation and copy, not one per doubling.
func poolSizeFor(n int) int {
	size := msgSmall
	for size < n && size < msgPooledMax {
		size <<= 1
	}
	return size
}

// msgPool returns the pool of buffers of capacity size, or nil.
func msgPool(size int) *sync.Pool {
	for i := range msgBufs {
		if msgSmall<<i == size {
			return &msgBufs[i]
		}
	}
	return nil
}

// msgReader holds the message one connection is reading: its buffers and
// what they reserved. It belongs to the connection's reader goroutine.
// Every message begins with begin and ends with done, on every path.
//
// A message grows by doubling its buffer up to msgPooledMax, then in
// chunks of msgPooledMax, all from the pools: a message that never ends
// leaves no garbage behind (growth by doubling alone left as much garbage
// as the live buffers, which the GC let the heap grow by), and the chunks
// of a message cut off go to the next one. A complete message of more
// than one chunk is copied into one buffer for decoding (bytes).
type msgReader struct {
	budget   *BodyBudget
	limit    int       // MaxMessageBytes
	w        *msgWatch // the payload deadline, made by mw at the first message; nil: none yet
	stamp    int64     // the message's start, for w; 0: its deadline not armed
	last     int       // the size of the connection's last message
	chunks   []*[]byte // full buffers before b
	chunked  int       // the bytes in chunks
	b        []byte    // the buffer being filled
	pooled   *[]byte   // the pooled buffer b is, or nil
	over     [1]byte   // where a byte past the limit is read (readWSMessage)
	reserved int64     // budget bytes held for chunks and b
	deadline time.Time

	// The watcher that makes w and the connection w cuts; mw nil: no
	// payload deadline (tests).
	mw   *msgWatcher
	conn readDeadliner
}

// newMsgReader returns the message reader of a connection, watched for
// the payload deadline from its first message until close: a connection
// whose client never sent costs the watcher nothing (no msgWatch, no
// entry in its set, about 80 bytes of an idle session).
func (h *Handler) newMsgReader(conn readDeadliner) msgReader {
	return msgReader{budget: h.opts.MessageBudget, limit: h.opts.MaxMessageBytes, mw: h.msgs, conn: conn}
}

// close ends the connection's reading: no message, no watch.
func (m *msgReader) close() {
	m.done()
	if m.w != nil {
		m.w.w.unwatch(m.w)
	}
}

// arm starts the payload deadline of a message: from now (its first
// byte arrived), the whole of it must come within the timeout. A reader
// that holds the whole message when it begins (the poller's, whose read
// took it in one piece) does not arm it: nothing is left to wait for but
// the budget, and room arms the deadline before it waits for that. The
// clock read and the watch's atomic operations so saved are a few per
// cent of a small websocket message's instructions.
func (m *msgReader) arm() {
	if m.w == nil && m.mw != nil {
		m.w = m.mw.watch(m.conn)
	}
	if m.w != nil {
		m.stamp = m.w.begin()
	}
}

// disarm ends the deadline of a message read whole: errMsgTimeout if the
// watcher found it late meanwhile.
func (m *msgReader) disarm() error {
	if m.stamp == 0 {
		return nil // not armed
	}
	if !m.w.end(m.stamp) {
		return m.fail(errMsgTimeout)
	}
	m.stamp = 0
	return nil
}

// fail ends the deadline of a message refused with err (which it
// returns), clearing what the watcher set, so that the connection can
// be drained.
func (m *msgReader) fail(err error) error {
	if m.w != nil {
		m.w.stop()
	}
	m.stamp = 0
	return err
}

// begin starts a message in a small pooled buffer (taken only now, so
// that an idle connection holds none). deadline bounds waiting for the
// budget; zero: the payload deadline's.
func (m *msgReader) begin(deadline time.Time) {
	m.pooled = msgBufs[0].Get().(*[]byte)
	m.b = (*m.pooled)[:0]
	m.deadline = deadline
}

// done lets go of the message's buffers and reservation. The message's
// bytes must not be used after it.
func (m *msgReader) done() {
	if m.b != nil {
		m.last = m.size()
	}
	m.unpool()
	if m.reserved > 0 {
		m.budget.release(m.reserved)
		m.reserved = 0
	}
	m.b = nil
}

// unpool gives the message's buffers back to their pools.
func (m *msgReader) unpool() {
	for i, c := range m.chunks {
		putMsgBuf(c)
		m.chunks[i] = nil
	}
	m.chunks, m.chunked = m.chunks[:0], 0
	putMsgBuf(m.pooled)
	m.pooled = nil
}

// putMsgBuf gives b back to the pool of its size, if there is one.
func putMsgBuf(b *[]byte) {
	if b == nil {
		return
	}
	if p := msgPool(cap(*b)); p != nil {
		*b = (*b)[:0]
		p.Put(b)
	}
}

// size is the number of bytes of the message read so far.
func (m *msgReader) size() int { return m.chunked + len(m.b) }

// bytes returns the message read so far in one slice: b, or a copy of
// the chunks and b into one buffer (counted in the reservation of the
// chunks, which go back to their pool).
func (m *msgReader) bytes() []byte {
	if len(m.chunks) == 0 {
		return m.b
	}
	out := make([]byte, 0, m.size())
	for _, c := range m.chunks {
		out = append(out, *c...)
	}
	out = append(out, m.b...)
	m.unpool()
	m.b = out
	return out
}

// room returns the free space to read the message's next bytes into,
// growing the message (within the budget) when its buffer is full;
// errAtLimit when it holds limit bytes. ctx ends a wait for the budget
// early (the session closed); errMsgBudget reports a wait that ended.
func (m *msgReader) room(ctx context.Context) ([]byte, error) {
	left := m.limit - m.size()
	if len(m.b) < cap(m.b) && left > 0 {
		return m.b[len(m.b):min(cap(m.b), len(m.b)+left)], nil
	}
	if left <= 0 {
		return nil, errAtLimit
	}
	// The new buffer's capacity is reserved before it is taken: when
	// doubling, what the old one (back to its pool once copied) did not
	// reserve already.
	chunk := cap(m.b) >= msgPooledMax
	size := min(max(2*cap(m.b), poolSizeFor(m.last)), left+len(m.b))
	more := int64(size) - m.reserved
	if chunk {
		size = min(msgPooledMax, left)
		more = int64(size)
	}
	got, ok := m.budget.tryAcquire(more)
	if !ok { // in use: wait, with a timer only then
		if m.deadline.IsZero() {
			if m.stamp == 0 {
				m.arm() // a whole message, not armed when it began
			}
			m.deadline = time.Now().Add(DefaultMessageReadTimeout)
			if m.stamp != 0 {
				m.deadline = m.w.deadline(m.stamp)
			}
		}
		wctx, cancel := context.WithDeadline(ctx, m.deadline)
		got, ok = m.budget.acquire(wctx, more)
		cancel()
		if !ok {
			return nil, errMsgBudget
		}
	}
	m.reserved += got
	var nb []byte
	var pooled *[]byte
	if p := msgPool(size); p != nil {
		pooled = p.Get().(*[]byte)
		nb = (*pooled)[:0]
	} else {
		nb = make([]byte, 0, size)
	}
	if chunk { // b is full: it becomes a chunk
		full := m.pooled
		if full == nil {
			full = new([]byte)
		}
		*full = m.b
		m.chunks, m.chunked = append(m.chunks, full), m.chunked+len(m.b)
	} else {
		nb = append(nb, m.b...)
		putMsgBuf(m.pooled)
	}
	m.b, m.pooled = nb, pooled
	return m.b[len(m.b):min(cap(m.b), len(m.b)+m.limit-m.size())], nil
}

// add appends p to the message, growing it as room does.
func (m *msgReader) add(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		r, err := m.room(ctx)
		if err != nil {
			return err
		}
		n := copy(r, p)
		m.b = m.b[:len(m.b)+n]
		p = p[n:]
	}
	return nil
}

// readErr turns a read error into errMsgTimeout when it is the message's
// deadline. gorilla hides a timeout's error value behind its own
// net.Error, hence the interface.
func readErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errMsgTimeout
	}
	return err
}

// readWSMessage reads the next websocket message through the gates; the
// caller calls m.done once it is done with data (also after an error).
// gorilla's own read limit is not used: it sends its close frame,
// without a reason, before the application can send its own.
func readWSMessage(ctx context.Context, conn *websocket.Conn, m *msgReader) (mt int, data []byte, err error) {
	mt, r, err := conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	m.arm()
	m.begin(time.Time{})
	for {
		p, err := m.room(ctx)
		full := errors.Is(err, errAtLimit)
		if full {
			p, err = m.over[:], nil // a byte more is one too many
		}
		if err != nil {
			return mt, nil, m.fail(err)
		}
		n, err := r.Read(p)
		switch {
		case full && n > 0:
			return mt, nil, m.fail(errTooBig)
		case !full:
			m.b = m.b[:len(m.b)+n]
		}
		if err != nil {
			if err != io.EOF {
				return mt, nil, m.fail(readErr(err))
			}
			break
		}
	}
	if err := m.disarm(); err != nil {
		return mt, nil, err
	}
	return mt, m.bytes(), nil
}

// readDeadliner is what the payload deadline needs of a connection.
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// readHixieFrame returns the next text message, at most m.limit bytes,
// read through the gates. Other frames (binary, or text with another
// type byte) are skipped, as the drafts say; errHixieClosing reports the
// closing handshake and errTooBig a frame over the limit. The caller
// calls m.done once it is done with the message (also after an error).
func (m *msgReader) readHixieFrame(ctx context.Context, br *bufio.Reader) ([]byte, error) {
	for {
		t, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		m.arm()
		msg, err := m.hixieFrame(ctx, br, t)
		if err != nil {
			return nil, m.fail(readErr(err))
		}
		if err := m.disarm(); err != nil {
			return nil, err
		}
		if msg != nil {
			return msg, nil
		}
	}
}

// hixieFrame reads the rest of a frame of type t: the message of a text
// frame of type 0x00, nil for a frame that is skipped.
func (m *msgReader) hixieFrame(ctx context.Context, br *bufio.Reader, t byte) ([]byte, error) {
	if t&0x80 == 0 {
		if t == 0x00 {
			m.begin(time.Time{})
		}
		size := 0
		for {
			chunk, err := br.ReadSlice(0xFF)
			n := len(chunk)
			if err == nil {
				n-- // the 0xFF that ends the frame
			}
			if size += n; size > m.limit {
				return nil, errTooBig
			}
			if t == 0x00 {
				if err := m.add(ctx, chunk[:n]); err != nil {
					return nil, err
				}
			}
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
		}
		if t != 0x00 {
			return nil, nil
		}
		return m.bytes(), nil
	}
	var length int64
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		length = length*128 + int64(b&0x7F)
		if length > int64(m.limit) {
			return nil, errTooBig
		}
		if b&0x80 == 0 {
			break
		}
	}
	if t == 0xFF && length == 0 {
		return nil, errHixieClosing
	}
	_, err := br.Discard(int(length))
	return nil, err
}

// msgFailure is how a connection ends when a message gate refused it.
type msgFailure struct {
	limit       session.Limit
	code        int
	reason, log string
}

var msgFailures = []struct {
	err error
	msgFailure
}{
	{errTooBig, msgFailure{session.LimitMessageSize, session.CodeTooBig, session.ReasonTooBig, "sockjs: websocket message over limit, closing"}},
	{errMsgTimeout, msgFailure{session.LimitMessageReadTimeout, CodeMessageTimeout, reasonMessageTimeout, "sockjs: websocket message not received in time, closing"}},
	{errMsgBudget, msgFailure{session.LimitMessageBudget, CodeServerBusy, reasonServerBusy, "sockjs: websocket message budget in use, closing"}},
}

// messageFailure reports whether err is a gate's refusal, and which.
func messageFailure(err error) (msgFailure, bool) {
	for _, f := range msgFailures {
		if errors.Is(err, f.err) {
			return f.msgFailure, true
		}
	}
	return msgFailure{}, false
}

// drain reads and drops what r gives until it fails: after a connection
// was refused mid-message, so that the client's unread bytes do not turn
// the close into a reset that could destroy the close frame in flight.
// It reads into a pooled 1 KiB buffer: io.Copy to io.Discard would take
// 8 KiB per connection, and thousands of connections are cut at once
// when an attack meets its deadline.
func drain(r io.Reader) {
	b := msgBufs[0].Get().(*[]byte)
	defer msgBufs[0].Put(b)
	buf := (*b)[:cap(*b)]
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}
