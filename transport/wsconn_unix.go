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
	nc.write = func(fd uintptr) bool {
		for {
			nc.wn, nc.werr = syscall.Write(int(fd), nc.wp)
			if nc.werr != syscall.EINTR {
				return true // never wait: a full socket is for Flush
			}
		}
	}
	return nc, nil
}

// tryWrite is one non-blocking write of p (under mu).
func (c *nbConn) tryWrite(p []byte) (int, error) {
	c.wp = p
	err := c.rc.Write(c.write)
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
	return n, nil
}
