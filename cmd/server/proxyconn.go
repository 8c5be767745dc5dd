package main

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/pires/go-proxyproto"
)

// Websockets behind the PROXY protocol, parked like the others. The
// transport parks an idle websocket in the kernel's poller only when it
// can read the TCP socket itself, that is when no wrapper between it and
// the socket holds bytes it read (transport's connUnwrapper). The PROXY
// protocol's reader (go-proxyproto's Conn) reads the header through a
// buffer, which may hold the bytes that followed it, and hands them out
// before it reads the socket again; once empty, the buffer is dropped
// and every later read goes straight to the socket. proxiedConn tells
// when that happened: a read of the proxied connection that reached the
// socket (socketReads counted it) after the first one (which reads the
// header, and may read the socket and still leave bytes in the buffer)
// found the buffer empty, for good. From then on the connection unwraps
// to the socket; until then it does not, and its websocket keeps a
// reader goroutine that reads through the wrapper. In practice net/http's
// reads of the request drain the buffer (it reads 4 KiB at a time, and
// the buffer held the start of the request), and its next read, the one
// that watches for the client's end while the handler runs, reaches the
// socket before the upgrade.
//
// Writes pass through go-proxyproto unchanged, so a proxiedConn also
// gives the socket to transport's non-blocking writes (SyscallConn).

// proxiedListener wraps the PROXY protocol's listener; its connections
// read from a socketReadsListener's.
type proxiedListener struct{ *proxyproto.Listener }

func (l proxiedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	pc, ok := c.(*proxyproto.Conn)
	if !ok {
		return c, nil // the policy skipped the PROXY protocol
	}
	sock, ok := pc.Raw().(*socketReads)
	if !ok {
		return c, nil
	}
	return &proxiedConn{Conn: pc, sock: sock}, nil
}

// proxiedConn is a connection read through the PROXY protocol's reader.
type proxiedConn struct {
	*proxyproto.Conn
	sock    *socketReads
	read    atomic.Bool // the first read (the header's) returned
	drained atomic.Bool // the PROXY reader holds no byte, for good
}

// Read reads through the PROXY reader; net/http reads one at a time.
func (c *proxiedConn) Read(b []byte) (int, error) {
	before := c.sock.reads.Load()
	n, err := c.Conn.Read(b)
	if !c.read.Load() {
		c.read.Store(true)
	} else if !c.drained.Load() && c.sock.reads.Load() != before {
		c.drained.Store(true)
	}
	return n, err
}

// UnwrapConn is the socket once the PROXY reader is drained (transport
// then reads the socket itself), and nil before.
func (c *proxiedConn) UnwrapConn() net.Conn {
	if !c.drained.Load() {
		return nil
	}
	return c.sock
}

// SyscallConn is the socket's, for transport's non-blocking writes: the
// PROXY protocol changes no byte written.
func (c *proxiedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.sock.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSocket
}

var errNoSocket = errors.New("the proxied connection has no descriptor")

// ReadFrom keeps the socket's sendfile/splice path for net/http.
func (c *proxiedConn) ReadFrom(r io.Reader) (int64, error) { return c.Conn.ReadFrom(r) }

// socketReadsListener's connections count the reads that reach the
// socket, for proxiedConn.
type socketReadsListener struct{ net.Listener }

func (l socketReadsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return &socketReads{Conn: c}, nil
}

type socketReads struct {
	net.Conn
	reads atomic.Uint32
}

func (c *socketReads) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

// UnwrapConn: the counter reads nothing itself.
func (c *socketReads) UnwrapConn() net.Conn { return c.Conn }

// ReadFrom keeps the socket's sendfile/splice path.
func (c *socketReads) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }
