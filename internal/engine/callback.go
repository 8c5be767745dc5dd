package engine

import (
	"fmt"
	"runtime/debug"
	"time"
)

// OnMessage makes the session hand each message from the client to f, in
// order, one at a time, on the goroutine that received it (a websocket's
// reader, an xhr_send request), instead of queueing it for Recv. No
// goroutine then waits for the session's messages and none is woken for
// each one: an echo answers on the goroutine that read the message, and a
// websocket session's frames are written by that goroutine when it is
// idle (see pump.go).
//
// Messages received before OnMessage are handed to f first, in order. A
// handler that calls OnMessage may return at once: the session then stays
// open until the client leaves or Close is called. Recv must not be used
// with OnMessage (it waits until the session closes).
//
// f must not block for long: while it runs the client's connection is not
// read, which is how a client is slowed down to the speed of its handler.
// Messages sent while f runs (by f or anyone else) are written when it
// returns. A panic in f closes the session with c[3000,"Go away!"], as a
// panic in a handler does; the transport logs it.
func (s *Session) OnMessage(f func(msg string)) {
	if f == nil {
		panic("sockjs: OnMessage(nil)")
	}
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	s.mu.Lock()
	if s.onMsg != nil {
		s.mu.Unlock()
		panic("sockjs: OnMessage called twice")
	}
	s.onMsg = f
	var pending []string
	at := now()
	if s.inHead < len(s.inQ) && s.state < stateClosing {
		at = s.inQ[s.inHead].at // the oldest: the delay is at least that
		for _, q := range s.inQ[s.inHead:] {
			pending = append(pending, q.msg)
		}
	}
	s.inQ, s.inHead, s.inBytes = nil, 0, 0
	if len(pending) > 0 {
		s.holdPump++
		defer s.releasePump() // before cbMu is let go (defers run last first)
	}
	space := s.inSpace
	s.mu.Unlock()
	signal(space) // a Deliver waiting for room goes to f instead
	_ = s.callHeld(f, pending, at)
}

// PanicError is what Deliver returns when the OnMessage callback
// panicked: the session is closed, and the transport logs it.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("sockjs: OnMessage callback panicked: %v", e.Value)
}

// HasOnMessage reports whether OnMessage was called: the transport then
// leaves the session open when the handler returns.
func (s *Session) HasOnMessage() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onMsg != nil
}

// deliverTo hands msgs to the OnMessage callback. The caller (Deliver)
// found the session open and took a hold (holdPump) under s.mu; this
// releases it. at is the messages' arrival, 0 if they arrived just now
// and the clock was not read.
//
// A lone message that finds the callback free waits for nothing: its
// receive delay is observed as 0, which saves two clock reads per message
// on the websocket echo path (about 250 of sockjsd's 8,300 instructions
// per echo, make bench-count). Otherwise the arrival is read before
// anything waits: the lock, or the callbacks of the messages before it.
func (s *Session) deliverTo(f func(string), msgs []string, at int64) error {
	switch {
	case at != 0:
		s.cbMu.Lock()
	case !s.cbMu.TryLock():
		at = now()
		s.cbMu.Lock()
	case len(msgs) > 1:
		at = now()
	}
	defer s.cbMu.Unlock()
	defer s.releasePump()
	return s.callHeld(f, msgs, at)
}

// callHeld calls f with each message while s.cbMu and a hold are held:
// what is sent during the calls is written afterwards, by releasePump on
// this goroutine, if no pump runs. The caller saw the session open; a
// callback may close it, so later messages check again.
func (s *Session) callHeld(f func(string), msgs []string, at int64) (err error) {
	for i, m := range msgs {
		if i > 0 && s.Closed() {
			return ErrClosed
		}
		var d time.Duration // at == 0: a lone message that waited for nothing (deliverTo)
		if at != 0 {
			d = time.Duration(now() - at)
		}
		s.opts.Observer.ReceiveDelay(s.transport, d)
		if err := s.call(f, m); err != nil {
			return err
		}
	}
	return nil
}

// call runs f(m), turning a panic into a closed session and a PanicError.
func (s *Session) call(f func(string), m string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
			s.CloseWith(CodeGoAway, ReasonGoAway, CauseServer)
		}
	}()
	f(m)
	return nil
}

// releasePump ends a hold (holdPump) and writes, on this goroutine,
// what was sent during it.
func (s *Session) releasePump() {
	s.mu.Lock()
	s.holdPump--
	start := s.holdPump == 0 && s.pendingLocked() && s.startPumpLocked()
	s.mu.Unlock()
	if start {
		s.pumpOn(true)
	}
}
