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
	nc := &nbConn{Conn: c, rc: rc, timeout: timeout}
	nc.write = func(fd uintptr) {
		for {
			nc.wn, nc.werr = sendNow(int(fd), nc.wp)
			if nc.werr != syscall.EINTR {
				return // never wait: a full socket is for Flush
			}
		}
	}
	return nc, nil
}

// tryWrite is one non-blocking write of p (under mu). It goes through
// RawConn.Control, which only keeps the descriptor open while it runs,
// rather than RawConn.Write, which also takes the descriptor's write lock
// and rearms its poller (2.4% and 1.5% of a pinned server's CPU in a hub
// fan-out, perf): the socket is non-blocking, and nbConn's own lock (mu,
// flushing) already keeps this write from running beside Flush's.
func (c *nbConn) tryWrite(p []byte) (int, error) {
	c.wp = p
	err := c.rc.Control(c.write)
	n, werr := c.wn, c.werr
	c.wp, c.wn, c.werr = nil, 0, nil
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	if n < 0 {
		n = 0
	}
	return n, nil
}
