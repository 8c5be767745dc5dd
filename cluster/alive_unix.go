//go:build unix

package cluster

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection can carry a request: the peer
// has not closed it (a read would see EOF) nor sent anything unasked. One
// non-blocking peek; a connection it cannot tell about counts as alive
// (peerTransport then tries again if the owner did close it).
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	ok = true
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read, the connection is open.
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait
	})
	return err == nil && ok
}
