package transport

import (
	"errors"

	"github.com/sockjsd/sockjsd/internal/engine"
)

// A taken-over streaming answer (stream.go) hears nothing from its client
// until the client leaves, yet something must notice that: its watch
// reads and drops whatever comes until the connection ends. On a plain
// TCP connection the watch is parked in the poller (wspoll_linux.go), as
// an idle websocket is, instead of a goroutine blocked in Read for the
// answer's whole life: a burst runs only when the client sent something
// or left, or the connection was closed.

// streamPark is the parked watch of one streaming answer.
type streamPark struct {
	parker
	sc *streamConn
	s  *engine.Session
}

// parkStream parks sc's watch, or returns nil when it cannot be (the
// caller then runs sc.watch on a goroutine).
func (h *Handler) parkStream(sc *streamConn, s *engine.Session) *streamPark {
	if !h.parkWS {
		return nil
	}
	tc := tcpConn(sc.conn)
	if tc == nil {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &streamPark{parker: parker{rc: rc}, sc: sc, s: s}
	p.parked.Store(true)
	if err := p.register(p); err != nil {
		h.log.Warn("sockjs: streaming answer not parked in the poller, watched on a goroutine", "err", err)
		return nil
	}
	return p
}

// wake makes sure a burst reads the connection; the answer's end calls
// it after closing the connection, which the poller does not report.
func (p *streamPark) wake() { p.parker.wake(p) }

// burst drops what the client sent until the socket is empty, then
// parks; once the connection ended it tells the session as watch does.
func (p *streamPark) burst() {
	r := pollBufs.Get().(*sockRead)
	defer pollBufs.Put(r)
	for {
		_, err := p.read(r)
		switch {
		case err == nil:
		case errors.Is(err, errWouldBlock):
			if p.park() {
				return
			}
		default:
			p.state.Store(pollEnded)
			p.unregister()
			p.sc.left(p.s)
			return
		}
	}
}
