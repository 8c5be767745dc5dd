package engine

// Writing without a pump: a message sent to an idle connection receiver
// (no pump running, nothing queued) is written by the goroutine that
// sent it, when the receiver can take a frame without waiting for the
// connection (a websocket over TCP: one non-blocking write system call).
// Measured with hub.BenchmarkHubFanOut (one publish to 1,000 websocket
// subscribers at a time): a pump goroutine started per delivery cost a
// quarter of the server's CPU in stack growth alone, since each new
// goroutine grows its stack on the way down to the write.
//
// The sender never waits for the client: what the socket does not take
// at once the receiver holds (at most that one frame), and a pump is
// started to flush it, waiting for the connection as pumps do, bounded
// by the write timeout. Until that pump ends, Send only queues, so a
// client that does not read fills its send queue and is closed with
// 3009 as before. Order and exactly-once hold because the sender claims
// the pump (startPumpLocked) for the write: one writer at a time, as
// always. Buffered and Written count a frame written now as written once
// the receiver took it, held part included, as they count what the
// kernel's socket buffer holds: the held part is at most that one frame.
//
// A hand-off (handoff.go) sees a frame written now as in flight until the
// receiver took all of it: Freeze waits for the sender's write and for a
// held part's flush (a pump flushes it even while frozen), and no frame
// is written now while frozen (Send only queues, for the snapshot).

// NowWriter is a Receiver that can also take a frame without waiting for
// its connection. The session uses it for messages sent while no pump
// runs; every other frame goes through WriteFrame.
type NowWriter interface {
	Receiver
	// WritesNow reports whether WriteFrameNow is available on this
	// receiver's connection (checked once, when it attaches).
	WritesNow() bool
	// WriteFrameNow writes a message frame without blocking: held
	// reports that the connection did not take all of it and the
	// receiver holds the rest until Flush (or the next WriteFrame); err
	// that the connection failed.
	WriteFrameNow(f *Frame) (held bool, err error)
	// Flush writes what the receiver holds, waiting for the connection
	// (bounded by the transport's write timeout).
	Flush() error
}

// writeNowLocked writes the queued messages to the connection receiver on
// the caller's goroutine, without waiting for the connection. The caller
// claimed the pump (startPumpLocked) and holds s.mu, which this releases.
// A pump takes over when the receiver held part of the frame, the write
// failed (it writes the close frame), or more was queued meanwhile.
func (s *Session) writeNowLocked() {
	r := s.nowConn
	s.nowBusy = true // until held is known: a hand-off waits for it
	batch := s.takeBatchLocked()
	s.mu.Unlock()
	f := &s.pumpFrame // the pump is ours: so is its frame
	f.Kind = FrameMessages
	fillFrame(f, batch)
	held, err := r.WriteFrameNow(f)
	// One lock for what the write changed: a hub fan-out makes this
	// call once per subscriber.
	t := s.observeBatch(f, batch)
	s.mu.Lock()
	s.batchWrittenLocked(batch, t, false)
	s.nowBusy = false
	if err != nil {
		s.mu.Unlock()
		s.closeLost(CauseError)
		go s.pump() // still claimed: it writes the close frame
		return
	}
	s.held = held
	if !s.pendingLocked() {
		if cap(f.Messages) > 64 {
			f.Messages = nil // do not keep a large batch's array
		}
		s.pumping = false
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go s.pump()
}

// flushHeld writes what the connection receiver held of the last frame
// written now (s.held, cleared by the caller, who set s.nowBusy for the
// flush), waiting for the
// connection; a failure closes the session with 1002.
func (s *Session) flushHeld(r NowWriter) step {
	err := r.Flush()
	s.mu.Lock()
	s.nowBusy = false
	s.mu.Unlock()
	if err != nil {
		s.closeLost(CauseError)
		return stepFailed
	}
	return stepWrote
}
