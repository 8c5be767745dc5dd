//go:build unix

package transport

import (
	"net"
	"syscall"
	"time"
)

func newNBConn(c net.Conn, timeout time.Duration) (*nbConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errNoRawConn
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nc := &nbConn{Conn: c, fd: -1, timeout: timeout}
	if err := rc.Control(func(fd uintptr) { nc.fd = int(fd) }); err != nil {
		return nil, err
	}
	return nc, nil
}

// tryWrite is one non-blocking write of p (under mu). It writes to the
// descriptor directly, rather than through RawConn.Write, which also
// takes the descriptor's write lock and rearms its poller (2.4% and 1.5%
// of a pinned server's CPU in a hub fan-out, perf), or RawConn.Control,
// which only keeps the descriptor open while it runs (its reference
// count, a closure, the netFD's cache lines: 4-5% of a hub delivery's
// CPU, pprof): the socket is non-blocking, nbConn's own lock (mu,
// flushing) keeps this write from running beside Flush's, and closed
// (under mu) from running after Close.
func (c *nbConn) tryWrite(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	var n int
	var err error
	for {
		n, err = sendNow(c.fd, p)
		if err != syscall.EINTR {
			break // never wait: a full socket is for Flush
		}
	}
	switch {
	case err == syscall.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	return n, nil
}
