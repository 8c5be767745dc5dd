package engine

import "time"

// Connection receivers (websockets) are served without a goroutine of
// their own: an idle websocket session holds no writer goroutine, only its
// transport's reader and a heartbeat timer. Frames are written by a pump
// that runs only while there is something to write: started by Send (or a
// close, or the heartbeat timer) when none is running, it writes batches
// until the queue is empty and then ends. One pump at a time, so frames
// keep their order and the receiver sees one writer; the session lock is
// never held across a write. What a pump writes, and in which order, is
// decided by writeNext (writer.go), the same step Serve's goroutine
// takes; this file is what sets pumps apart: starting them on demand,
// and the heartbeat timer that asks them for a heartbeat (hbDue).
//
// Measured (docs/bench.md): a parked Serve goroutine per websocket session
// was about 4 KB of the idle session's stack, and waking it cost as much
// as starting a pump.

// ServeConn attaches r, writes the open frame on the caller's goroutine,
// and returns; from then on pumps write to r. onEnd runs once the close
// frame was written to r (or failed), on the pump's goroutine: the
// transport finishes the connection there. r's Gone is not watched: a
// transport whose connection went away says so (connLost), and the pump
// that writes the close frame then calls onEnd.
func (s *Session) ServeConn(r Receiver, onEnd func()) {
	if !s.attach(r) {
		onEnd()
		return
	}
	if s.writeOpen(r) == stepDone {
		// A streaming response whose limit the open frame reached:
		// the client comes back with a new one. (One that failed is
		// closing: a pump writes the close frame.)
		s.detach(r, true)
		onEnd()
		return
	}
	s.mu.Lock()
	s.conn, s.connEnd = r, onEnd
	if nw, ok := r.(NowWriter); ok && nw.WritesNow() {
		s.nowConn = nw
	}
	if goneNow(r) {
		// The client left before it was attached: ConnLost found no
		// connection to close the session for.
		if s.state < stateClosing {
			s.closeLocked(CodeInterrupted, ReasonInterrupt, CauseClient)
		}
	}
	s.lastWrite = now()
	s.hb = time.AfterFunc(s.opts.HeartbeatDelay, s.heartbeat)
	// Messages sent (or a close) before the connection was set found no
	// one to start a pump: start one now.
	start := s.pendingLocked() && s.startPumpLocked()
	s.mu.Unlock()
	if start {
		go s.pump()
	}
}

// startPumpLocked claims the pump when a connection receiver is set and
// no pump runs; the caller then runs s.pump (on a new goroutine unless it
// may block on this client's connection). s.mu must be held.
func (s *Session) startPumpLocked() bool {
	// While an OnMessage callback runs (holdPump), its goroutine writes
	// when it returns (releasePump), without a hand-off: it finds the
	// work left (pendingLocked) rather than a note that a pump was
	// wanted.
	if s.conn == nil || s.pumping || s.holdPump > 0 {
		return false
	}
	s.pumping = true
	return true
}

// pendingLocked reports whether a pump has something to write: messages,
// a close frame, a heartbeat. Whoever asked for a pump while none could
// start left one of these. s.mu must be held.
func (s *Session) pendingLocked() bool {
	return len(s.out) > 0 || s.state >= stateClosing || s.hbDue || s.held
}

// wake tells whoever writes for the session that something changed (a
// message, a close): the Serve loop, or a pump, started if none runs.
func (s *Session) wake() {
	s.mu.Lock()
	notify := s.notify
	start := s.startPumpLocked()
	s.mu.Unlock()
	signal(notify)
	if start {
		go s.pump()
	}
}

// heartbeat runs on the timer's goroutine: it writes a heartbeat frame
// when nothing was written for HeartbeatDelay, and otherwise re-arms for
// the rest of the delay.
func (s *Session) heartbeat() {
	s.mu.Lock()
	if s.conn == nil {
		s.mu.Unlock()
		return
	}
	if idle := time.Duration(now() - s.lastWrite); idle < s.opts.HeartbeatDelay {
		s.hb.Reset(s.opts.HeartbeatDelay - idle)
		s.mu.Unlock()
		return
	}
	s.hbDue = true
	s.hb.Reset(s.opts.HeartbeatDelay)
	start := s.startPumpLocked()
	s.mu.Unlock()
	if start {
		s.pump() // the timer's goroutine is already a fresh one
	}
}

// pump writes what the session has for its connection receiver, then
// ends: messages, a due heartbeat, and finally the close frame, after
// which the receiver is detached and the transport's onEnd runs. The
// caller claimed the pump (startPumpLocked).
func (s *Session) pump() { s.pumpOn(false) }

// pumpOn is pump; inline says it runs on a goroutine that must not wait
// for the connection's end (a websocket's reader, after an OnMessage
// callback): the close frame and onEnd are then left to a new goroutine.
func (s *Session) pumpOn(inline bool) {
	// The frame is the session's: one pump at a time uses it, and a
	// frame on this stack would escape (WriteFrame is an interface
	// call) and cost an allocation per pump.
	f := &s.pumpFrame
	f.Kind = FrameMessages
	m := pumped
	if inline {
		m = pumpedIn
	}
	for s.writeNext(nil, f, m).more() {
	}
}

// releaseConnLocked detaches the connection receiver from the pumps and
// returns its onEnd: no pump starts for it again, and one may start for
// the next receiver as soon as that attaches. f, when not nil, is the
// pump's frame, whose array is kept for the next pump unless large. s.mu
// must be held.
func (s *Session) releaseConnLocked(f *Frame) func() {
	onEnd := s.connEnd
	s.conn, s.connEnd, s.nowConn = nil, nil, nil
	s.hbDue, s.held = false, false
	if s.hb != nil {
		s.hb.Stop()
		s.hb = nil
	}
	if f != nil && cap(f.Messages) > 64 {
		f.Messages = nil
	}
	s.pumping = false
	return onEnd
}

// connDone lets go of a receiver that takes no more frames (a streaming
// response that reached its limit) while the session goes on: the client
// comes back with a new request.
func (s *Session) connDone(r Receiver, f *Frame) {
	s.mu.Lock()
	onEnd := s.releaseConnLocked(f)
	s.mu.Unlock()
	s.detach(r, true)
	onEnd()
}

// ConnLost closes the session when r, its connection receiver, broke or
// the client left; a receiver already let go (connDone) or not attached
// yet changes nothing (serveConn checks Gone when it attaches).
func (s *Session) ConnLost(r Receiver) {
	s.mu.Lock()
	lost := s.conn == r && s.state < stateClosing
	if lost {
		s.closeLocked(CodeInterrupted, ReasonInterrupt, CauseClient)
	}
	s.mu.Unlock()
	if lost {
		s.wake()
	}
}

// goneReporter is a Receiver that says whether its client left without
// making its Gone channel, which it makes only for someone who waits
// (transport's websockets: an idle one keeps none).
type goneReporter interface{ GoneNow() bool }

// goneNow reports whether r's client left.
func goneNow(r Receiver) bool {
	if g, ok := r.(goneReporter); ok {
		return g.GoneNow()
	}
	select {
	case <-r.Gone():
		return true
	default:
		return false
	}
}
