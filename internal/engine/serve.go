package engine

import "time"

// Finisher is a Receiver whose frame reaches the client only after Serve
// returned: a polling answer is sent after the session detached it, so
// that a client polling again at once never finds it still attached. Serve
// calls Finish after detaching; an error means the client cannot have had
// what was written, and the session then closes with
// c[1002,"Connection interrupted"] instead of carrying on without the
// messages. A later receiver waits for Finish before it takes messages, so
// nothing is delivered past a batch whose fate is unknown.
type Finisher interface {
	Receiver
	Finish() error
}

var (
	openFrame      = Frame{Kind: FrameOpen}
	heartbeatFrame = Frame{Kind: FrameHeartbeat}
	anotherFrame   = Frame{Kind: FrameClose, Code: CodeAnotherConn, Reason: ReasonAnother}
)

// Serve attaches r as the session's receiving connection and writes frames
// to it until r is done, r's connection goes away, or the session ends.
//
// Only one receiver may be attached at a time. A second one waits up to
// Options.ReceiverWait for the first to leave, because a client that
// aborted a request and sent a new one may be faster than the server's
// noticing the abort; if the first is still there after that, the second
// gets c[2010,"Another connection still open"] and the first is not
// disturbed. A closed session answers every receiver with its close frame.
func (s *Session) Serve(r Receiver) {
	if !s.attach(r) {
		return
	}
	carried := false // whether r took the open frame or messages
	defer func() { s.detach(r, carried) }()

	s.mu.Lock()
	// Before the first writeNext: whoever changes the session after that
	// finds the channel to signal (lazyChan).
	notify := lazyChan(&s.notify)
	settling := s.settling
	s.mu.Unlock()
	if settling != nil {
		// The previous polling answer is being sent: whether it got
		// through decides whether the session goes on.
		select {
		case <-settling:
		case <-r.Gone():
			s.CloseWith(CodeInterrupted, ReasonInterrupt, CauseClient)
			return
		}
	}

	if st := s.writeOpen(r); st != stepIdle {
		carried = true
		if st != stepWrote {
			return
		}
	}

	// This goroutine writes (writer.go, served); its heartbeat timer
	// restarts with each batch.
	hb := time.NewTimer(s.opts.HeartbeatDelay)
	defer hb.Stop()
	f := Frame{Kind: FrameMessages}
	for {
		switch s.writeNext(r, &f, served) {
		case stepWrote:
			carried = true
			hb.Reset(s.opts.HeartbeatDelay) // since Go 1.23 Reset needs no drain
			continue
		case stepFailed, stepDone:
			carried = true
			return
		case stepClosed:
			return
		}

		select {
		case <-notify:
		case <-hb.C:
			done, err := s.writeHeartbeat(r)
			if err != nil || done {
				return
			}
			hb.Reset(s.opts.HeartbeatDelay)
		case <-r.Gone():
			// The client went away while we were waiting: messages may
			// have been lost in flight, so the session cannot go on.
			s.CloseWith(CodeInterrupted, ReasonInterrupt, CauseClient)
			return
		}
	}
}

// Written returns a channel that is closed once the session has written
// its next batch of messages to the client's connection, so that Buffered
// has gone down: it is the back-pressure signal of a service whose
// producer may outrun its client (a program's output, a feed), which
// waits on it instead of polling Buffered.
//
// Take the channel before reading Buffered, so that a batch written in
// between is not missed, and wait on Context as well: the channel is not
// closed when the session ends, and a session may end with messages still
// queued (its client left, or a 3009 overflow dropped them). A
// producer that keeps its output within a window below the send queue
// limits (Options.SendQueueMessages and SendQueueBytes) then runs as fast
// as its client reads and never gets the client closed with 3009:
//
//	for {
//		written := s.Written()
//		if n, _ := s.Buffered(); n < window {
//			break // room: Send the next message
//		}
//		select {
//		case <-written:
//		case <-s.Context().Done():
//			return // closed
//		}
//	}
//
// "Written" means handed to the connection (a websocket, a streaming or
// polling response), not acknowledged by the client. A polling client's
// batch is written when it polls, so a session between polls waits for
// the next one. Every caller waiting for the same batch gets the same
// channel; a session's first call after each batch allocates one.
func (s *Session) Written() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = make(chan struct{})
	}
	return s.written
}

// attach makes r the attached receiver, waiting (bounded) for another one
// to leave. It returns false when r was answered instead: with the close
// frame of a closed session, or with 2010.
func (s *Session) attach(r Receiver) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.handoff != hoNone {
			// Frozen for a hand-off: wait for its outcome. Handed off:
			// the client must ask again (its request then finds the
			// node that resumed the session).
			if s.handoff == hoDone {
				s.mu.Unlock()
				_, _ = r.WriteFrame(&lastFrame)
				return false
			}
			end := s.handoffEnd
			s.mu.Unlock()
			select {
			case <-end:
				continue
			case <-r.Gone():
				return false
			}
		}
		// A closed session answers with its close frame even while the
		// receiver that got it first is still detaching.
		if s.state >= stateClosed {
			f := Frame{Kind: FrameClose, Code: s.closeCode, Reason: s.closeReason}
			s.mu.Unlock()
			_, _ = r.WriteFrame(&f)
			return false
		}
		if !s.attached {
			s.attached = true
			if s.expiry != nil {
				s.expiry.Stop()
			}
			s.mu.Unlock()
			return true
		}
		if timer == nil {
			timer = time.NewTimer(s.opts.ReceiverWait)
		}
		if s.detached == nil {
			s.detached = make(chan struct{})
		}
		left := s.detached
		s.mu.Unlock()

		select {
		case <-left:
			// Try again: another waiting receiver may win, or the
			// session may have closed.
		case <-timer.C:
			_, _ = r.WriteFrame(&anotherFrame)
			return false
		case <-r.Gone():
			return false
		}
	}
}

// detach releases the receiver slot, finishes a polling answer, and starts
// the expiry clock.
func (s *Session) detach(r Receiver, carried bool) {
	fin, finishing := r.(Finisher)
	var settled chan struct{}
	s.mu.Lock()
	s.attached = false
	s.releaseDue = false
	if s.detached != nil {
		close(s.detached)
		s.detached = nil
	}
	if finishing {
		settled = make(chan struct{})
		s.settling = settled
	}
	s.mu.Unlock()

	if finishing {
		// Only now may the client see the answer end (and poll again).
		if err := fin.Finish(); err != nil && carried {
			s.closeLost(CauseClient)
		}
		s.mu.Lock()
		close(settled)
		if s.settling == settled {
			s.settling = nil
		}
		s.finishPending = false
		s.mu.Unlock()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached || s.state == stateExpired {
		return // a new receiver came while the answer was being finished
	}
	if s.expiry == nil {
		s.expiry = time.AfterFunc(s.opts.DisconnectDelay, s.expire)
	} else {
		s.expiry.Reset(s.opts.DisconnectDelay)
	}
}

// Attached reports whether a receiving connection is attached now.
func (s *Session) Attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attached
}

// closeLost closes the session with c[1002,"Connection interrupted"] after
// a frame may have been lost on its way to the client. Messages queued
// since are dropped, so that the close frame is the next thing the client
// sees rather than messages after a gap.
func (s *Session) closeLost(why CloseCause) {
	s.mu.Lock()
	if s.state < stateClosing {
		clear(s.out)
		s.out, s.outBytes = s.out[:0], 0
		s.closeLocked(CodeInterrupted, ReasonInterrupt, why)
	}
	s.mu.Unlock()
	s.wake()
}
