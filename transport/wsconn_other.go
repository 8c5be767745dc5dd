//go:build !unix

package transport

import (
	"net"
	"time"
)

// newNBConn: gorilla writes directly (and pumps wait for the client) on
// platforms without the non-blocking write of wsconn_unix.go.
func newNBConn(net.Conn, time.Duration) (*nbConn, error) { return nil, errNoRawConn }

func (c *nbConn) tryWrite([]byte) (int, error) { return 0, errNoRawConn }
