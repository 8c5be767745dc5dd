package transport

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// nbConn is a websocket's TCP connection as gorilla/websocket writes to
// it: a write never waits for the client. What the socket takes at once
// (one non-blocking write system call) is written; the rest is held, in
// order, until Flush writes it, waiting for the client, bounded by the
// write timeout. Gorilla's write lock is then never held while the
// client is slow to read, and a session's idle connection can be written
// by whoever sends to it (engine.NowWriter) instead of a goroutine
// started per message, which costs a quarter of a hub fan-out's CPU.
//
// What is held is bounded by what the writers put in before they flush:
// the session flushes after every frame it writes with WriteFrame and
// before it writes a frame now again (engine's writenow.go), so it holds
// at most one frame plus the control frames (pongs, a close) written
// meanwhile; the reader flushes the control frames it writes.
type nbConn struct {
	net.Conn
	fd      int           // the socket's descriptor, open until Close (under mu) marks closed
	timeout time.Duration // of each Flush

	fmu sync.Mutex // one Flush at a time

	mu       sync.Mutex
	held     []byte // written by gorilla, not yet by the socket
	spare    []byte // the last flushed array, reused
	flushing bool   // a Flush is writing: later bytes queue behind it
	err      error  // the connection failed: every later write fails
	// closeSent: gorilla wrote a websocket close frame (Write sees it
	// whole: a control frame is always one write), so WriteData writes
	// no data frame after it, as gorilla's own writes would not.
	closeSent bool
	// closed: Close was called. The non-blocking write goes to fd
	// without the descriptor's reference count (wsconn_unix.go): this
	// flag, set under mu before the descriptor is closed, keeps it from
	// writing to a closed descriptor, or to another connection's that
	// reuses its number.
	closed bool
}

// errNoRawConn: a connection without a file descriptor (TLS, a test's
// pipe), or a platform without non-blocking writes here, is written by
// gorilla directly.
var errNoRawConn = errors.New("no raw connection")

// Close marks the connection closed for the non-blocking writes, then
// closes it.
func (c *nbConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// SetWriteDeadline is ignored: no write waits but Flush, which is
// bounded by the write timeout from its start.
func (c *nbConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only (see SetWriteDeadline).
func (c *nbConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Write writes what the socket takes now and holds the rest.
func (c *nbConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isCloseFrame(p) {
		c.closeSent = true
	}
	return c.writeLocked(p)
}

// WriteData writes p, one whole websocket data frame, as Write does,
// unless a close frame was written before it (websocket.ErrCloseSent).
// held reports that bytes wait for a Flush that no one is making (Held),
// without a second look under the lock.
func (c *nbConn) WriteData(p []byte) (held bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent && c.err == nil {
		return false, websocket.ErrCloseSent
	}
	if _, err := c.writeLocked(p); err != nil {
		return false, err
	}
	return len(c.held) > 0 && !c.flushing, nil
}

// isCloseFrame reports whether p is a server's websocket close frame as
// gorilla writes it: one unmasked control frame, whole. No other write
// can look like one: a data message's first write starts with a data
// frame's header, and the rest of a large one is over 2 KB, longer than
// any control frame.
func isCloseFrame(p []byte) bool {
	return len(p) >= 2 && p[0] == 0x88 && len(p) == 2+int(p[1]&0x7f)
}

func (c *nbConn) writeLocked(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.flushing || len(c.held) > 0 {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	n, err := c.tryWrite(p)
	if err != nil {
		c.err = err
		return n, err
	}
	if n < len(p) {
		c.held = append(c.spare[:0], p[n:]...)
		c.spare = nil
	}
	return len(p), nil
}

// Held reports whether bytes wait for a Flush that no one is making.
func (c *nbConn) Held() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held) > 0 && !c.flushing
}

// Flush writes what is held, waiting for the client up to the write
// timeout for each batch of held bytes.
func (c *nbConn) Flush() error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	for {
		c.mu.Lock()
		if c.err != nil || len(c.held) == 0 {
			err := c.err
			c.mu.Unlock()
			return err
		}
		buf := c.held
		c.held, c.flushing = nil, true
		c.mu.Unlock()
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		_, err := c.Conn.Write(buf)
		// A deadline left in the past would fail the next
		// non-blocking write before it tried.
		_ = c.Conn.SetWriteDeadline(time.Time{})
		c.mu.Lock()
		c.flushing = false
		if err != nil {
			c.err = err
		}
		if cap(buf) <= 64<<10 {
			c.spare = buf[:0]
		}
		c.mu.Unlock()
	}
}

// nbHijacker hands gorilla's upgrader the hijacked connection as an
// nbConn (when it has a file descriptor).
type nbHijacker struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *nbConn // set by Hijack
}

func (h *nbHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return c, brw, err
	}
	if nc, err := newNBConn(c, h.timeout); err == nil {
		h.conn = nc
		return nc, brw, nil
	}
	return c, brw, nil
}
