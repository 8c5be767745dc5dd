package engine

import "time"

// The writer engine: every frame a receiver gets is written here,
// whichever goroutine writes it: the open frame by writeOpen when the
// receiver attaches, then what writeNext decides. Queued
// messages go first, as one batch; then the close frame of a closing
// session; then a heartbeat, when one is due. Receivers differ only in
// what writeMode says:
//
//   - served (Serve): the request's goroutine writes, and waits between
//     frames for the session's notify, the client's leaving, and its own
//     heartbeat timer. A receiver that takes one frame (a poll) says so
//     through WriteFrame's done; the request then ends.
//   - pumped (ServeConn: websockets, taken-over streams): nobody waits.
//     A pump runs writeNext until there is nothing to write and ends;
//     one is started on demand (startPumpLocked) by Send, a close, the
//     heartbeat timer (which marks hbDue), or runs on the goroutine of an
//     OnMessage callback that returns (releasePump, inline). writeNext
//     then also lets go of the receiver when it is done or closed.
//
// The session lock is never held across a write, and one goroutine at a
// time writes to a receiver (the attached Serve, or the one pump), so
// frames keep their order.

// writeMode is how a receiver is written to.
type writeMode struct {
	// pumped: the connection receiver s.conn, written by a pump. When
	// false, the receiver is Serve's, written by its request goroutine.
	pumped bool
	// inline: a pump on a goroutine that must not wait for the
	// connection's end (a websocket's reader, after an OnMessage
	// callback): the close frame and onEnd are left to a new pump.
	inline bool
}

var (
	served   = writeMode{}
	pumped   = writeMode{pumped: true}
	pumpedIn = writeMode{pumped: true, inline: true}
)

// step is what writeNext did.
type step uint8

const (
	stepIdle   step = iota // nothing to write (a pump has ended)
	stepWrote              // a batch or a heartbeat; the receiver takes more
	stepFailed             // a write failed: the session is closing with 1002
	stepDone               // the receiver takes no more frames (a poll answered, a stream at its limit); a pump let it go
	stepClosed             // the close frame was written (a pump let the receiver go, or passed it on)
)

// more reports whether a pump goes on after s: a failed write leaves the
// close frame to be written.
func (st step) more() bool { return st == stepWrote || st == stepFailed }

// writeNext writes the session's next frame: to r when m is served, to
// the connection receiver when pumped (r is then nil). f is the writer's
// message frame, whose array is reused.
func (s *Session) writeNext(r Receiver, f *Frame, m writeMode) step {
	s.mu.Lock()
	if m.pumped {
		r = s.conn
	}
	switch {
	// What the receiver held of a frame written now goes first, even
	// while frozen: that frame is in flight, which Freeze waits for. A
	// frame written by WriteFrame would flush it too, but a pump may
	// have nothing else to write.
	case m.pumped && s.held:
		s.held, s.nowBusy = false, true
		nw := s.nowConn
		s.mu.Unlock()
		return s.flushHeld(nw)

	case s.handoff == hoFrozen:
		// Nothing is written while the session is being handed off:
		// wait for Done or Thaw (a pump ends; Serve waits for notify).

	case s.handoff == hoDone:
		if m.pumped {
			if r == nil {
				s.pumping = false
				s.mu.Unlock()
				return stepIdle
			}
			onEnd := s.releaseConnLocked(f)
			s.mu.Unlock()
			_, _ = r.WriteFrame(&lastFrame)
			s.detach(r, true)
			onEnd()
			return stepClosed
		}
		s.mu.Unlock()
		_, _ = r.WriteFrame(&lastFrame)
		return stepClosed // Serve detaches r

	// An ended session (End) with messages queued goes to its close
	// frame on a connection: its connection is what ended it.
	case len(s.out) > 0 && (s.state < stateClosed || !m.pumped):
		batch := s.takeBatchLocked()
		s.mu.Unlock()
		done, err := s.writeBatch(r, f, batch)
		switch {
		case err != nil:
			s.closeLost(CauseError) // a pump writes the close frame next
			return stepFailed
		case done:
			if m.pumped {
				s.connDone(r, f)
			}
			return stepDone
		}
		return stepWrote

	case s.state >= stateClosing && m.inline:
		s.mu.Unlock()
		go s.pump() // the pump is still claimed: it passes on
		return stepClosed

	case s.state >= stateClosing:
		if s.state < stateClosed {
			s.state = stateClosed
		}
		cf := Frame{Kind: FrameClose, Code: s.closeCode, Reason: s.closeReason}
		if !m.pumped {
			s.mu.Unlock()
			_, _ = r.WriteFrame(&cf)
			return stepClosed // Serve detaches r
		}
		onEnd := s.releaseConnLocked(nil)
		s.mu.Unlock()
		select {
		case <-r.Gone():
			// The client left (its close is answered by the
			// transport): there is no one to write to.
		default:
			_, _ = r.WriteFrame(&cf)
		}
		s.detach(r, true)
		onEnd()
		return stepClosed

	case s.releaseDue && r != nil:
		// Release: this answer ends (the client asks again); the
		// session goes on.
		s.releaseDue, s.hbDue = false, false
		s.mu.Unlock()
		if _, err := s.writeLast(r); err != nil {
			return stepFailed
		}
		if m.pumped {
			s.connDone(r, f)
		}
		return stepDone

	case m.pumped && s.hbDue:
		s.hbDue = false
		s.mu.Unlock()
		switch done, err := s.writeHeartbeat(r); {
		case err != nil:
			return stepFailed
		case done:
			s.connDone(r, f)
			return stepDone
		}
		return stepWrote
	}
	if m.pumped {
		if cap(f.Messages) > 64 {
			f.Messages = nil // do not keep a large batch's array
		}
		s.pumping = false
	}
	s.mu.Unlock()
	return stepIdle
}

// writeHeartbeat writes a heartbeat frame to r; a failed write closes the
// session with 1002.
func (s *Session) writeHeartbeat(r Receiver) (done bool, err error) {
	return s.writeBeat(r, &heartbeatFrame)
}

// writeLast is writeHeartbeat with the heartbeat that ends r's answer
// (lastFrame).
func (s *Session) writeLast(r Receiver) (done bool, err error) {
	return s.writeBeat(r, &lastFrame)
}

func (s *Session) writeBeat(r Receiver, hb *Frame) (done bool, err error) {
	done, err = r.WriteFrame(hb)
	s.mu.Lock()
	s.lastWrite = now() // the pumps' heartbeat timer counts from here
	s.mu.Unlock()
	if err != nil {
		s.CloseWith(CodeInterrupted, ReasonInterrupt, CauseError)
	}
	return done, err
}

// writeOpen writes the open frame to r unless a receiver had it:
// stepIdle when one had. It comes first even when the application closed
// the session before any receiver came (the /close service does). A
// failed write closes the session with 1002.
func (s *Session) writeOpen(r Receiver) step {
	s.mu.Lock()
	opened := s.opened
	s.opened = true
	if s.state == stateNew {
		s.state = stateOpen
	}
	s.mu.Unlock()
	if opened {
		return stepIdle
	}
	done, err := r.WriteFrame(&openFrame)
	s.opts.Observer.TimeToOpen(s.transport, time.Duration(now()-s.created))
	switch {
	case err != nil:
		s.CloseWith(CodeInterrupted, ReasonInterrupt, CauseError)
		return stepFailed
	case done:
		return stepDone
	}
	return stepWrote
}

// takeBatchLocked takes every queued message for one frame; Buffered
// counts them until writeBatch wrote them. s.mu must be held.
func (s *Session) takeBatchLocked() []queued {
	batch := s.out
	s.writing, s.writingB = len(batch), s.outBytes
	s.out, s.spare, s.outBytes = s.spare[:0], nil, 0
	return batch
}

// writeBatch writes batch to r as the frame f (whose array it reuses),
// with s.mu not held, and gives the batch's array back for the next one.
func (s *Session) writeBatch(r Receiver, f *Frame, batch []queued) (done bool, err error) {
	fillFrame(f, batch)
	done, err = r.WriteFrame(f)
	_, finisher := r.(Finisher)
	s.batchWritten(f, batch, finisher && done && err == nil)
	return done, err
}

// fillFrame makes f the message frame of batch, reusing f's array.
func fillFrame(f *Frame, batch []queued) {
	f.Messages = f.Messages[:0]
	for i := range batch {
		f.Messages = append(f.Messages, batch[i].msg)
	}
}

// batchWritten records that batch was written as f (or failed): its
// delivery delays, the end of Buffered's count, Written's signal; it
// keeps the batch's array for the next one. finishing says the batch is
// on its way only once the receiver's answer is finished (detach).
func (s *Session) batchWritten(f *Frame, batch []queued, finishing bool) {
	t := s.observeBatch(f, batch)
	s.mu.Lock()
	s.batchWrittenLocked(batch, t, finishing)
	s.mu.Unlock()
}

// observeBatch is batchWritten's part without the lock: the delivery
// delays, and the batch's messages let go. It returns when it was.
func (s *Session) observeBatch(f *Frame, batch []queued) int64 {
	t := now()
	for i := range batch {
		s.opts.Observer.DeliveryDelay(s.transport, time.Duration(t-batch[i].at))
		batch[i].msg = "" // let the garbage collector have it
	}
	clear(f.Messages)
	return t
}

// batchWrittenLocked is batchWritten's part under s.mu, t its time.
func (s *Session) batchWrittenLocked(batch []queued, t int64, finishing bool) {
	s.writing, s.writingB = 0, 0
	if finishing {
		// Written, but on its way only once the answer is finished
		// (detach): a hand-off waits for that too.
		s.finishPending = true
	}
	s.lastWrite = t
	if s.written != nil {
		close(s.written) // Written
		s.written = nil
	}
	if s.spare == nil && cap(batch) <= 1024 {
		s.spare = batch[:0]
	}
}
