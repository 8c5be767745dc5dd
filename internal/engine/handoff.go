package engine

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Hand-off: in cluster mode a node that drains moves its HTTP sessions to
// another node instead of closing them. The session is frozen (Freeze):
// no new batch is written and no new receiver attaches, and Freeze waits
// for what is in flight (a batch being written, a polling answer being
// sent, xhr_send requests being delivered) so that the snapshot splits
// the messages cleanly into "on the wire" and "queued". Snapshot then
// copies what the session is made of; once the caller has stored it, Done
// ends the session here without a close frame: the attached receiver gets
// a heartbeat and its answer ends normally, so the client asks again and
// reaches whichever node resumes the session (Registry.Restore). Thaw
// undoes a freeze whose hand-off failed.

// ErrHandedOff is returned by Freeze for a session that cannot be handed
// off (closed, a websocket's, or frozen already).
var ErrHandedOff = errors.New("sockjs: session cannot be handed off")

const (
	hoNone   uint8 = iota
	hoFrozen       // Freeze: nothing new is written or attached
	hoDone         // Done: the session lives on another node
)

// Snapshot is a session's state at hand-off: what the node that resumes it
// needs to carry on under the same URL session id without the client
// noticing.
type Snapshot struct {
	Key       string    `json:"key"`
	ID        string    `json:"id"`
	Transport Transport `json:"transport"`
	Request   Request   `json:"request"`
	Opened    bool      `json:"opened"`
	// Out are the messages sent and not yet written; In those received
	// and not yet taken by the application.
	Out []string `json:"out,omitempty"`
	In  []string `json:"in,omitempty"`
}

// Bytes is the snapshot's size as the limits count it: its messages.
func (sn *Snapshot) Bytes() int {
	n := 0
	for _, m := range sn.Out {
		n += len(m)
	}
	for _, m := range sn.In {
		n += len(m) + RecvEntryBytes
	}
	return n
}

// Key is the session's registry key: its URL session id.
func (s *Session) Key() string { return s.key }

// HandOffable reports whether the session can be handed off: an open HTTP
// session (websockets are their connection and end with it).
func (s *Session) HandOffable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state < stateClosing && s.handoff == hoNone && !strings.HasPrefix(s.key, "ws/")
}

// HandingOff reports whether the session is frozen or handed off: a send
// request must not be delivered here then (the transport passes it on to
// the node that resumes the session).
func (s *Session) HandingOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handoff != hoNone
}

// HandedOff reports whether the session lives on another node now.
func (s *Session) HandedOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handoff == hoDone
}

// freezePoll is how often Freeze looks whether what was in flight has
// finished: writes and deliveries take microseconds to milliseconds, and
// a condition variable could not be waited on with a deadline.
const freezePoll = time.Millisecond

// Freeze stops the session's writing and waits, until ctx ends, for what
// is in flight: a batch being written, a polling answer being sent,
// xhr_send requests being delivered (their OnMessage callbacks with them).
// Messages sent meanwhile are queued. On error the session is thawed.
func (s *Session) Freeze(ctx context.Context) error {
	s.mu.Lock()
	if s.state >= stateClosing || s.handoff != hoNone || strings.HasPrefix(s.key, "ws/") {
		s.mu.Unlock()
		return ErrHandedOff
	}
	s.handoff = hoFrozen
	s.handoffEnd = make(chan struct{})
	s.mu.Unlock()
	t := time.NewTicker(freezePoll)
	defer t.Stop()
	for {
		s.mu.Lock()
		idle := s.writing == 0 && s.settling == nil && !s.finishPending && s.holdPump == 0 && s.sendSlots.Load() == 0 &&
			!s.nowBusy && !s.held // a frame written now, or its held part (writenow.go)
		closed := s.state >= stateClosing
		s.mu.Unlock()
		switch {
		case closed:
			s.Thaw()
			return ErrClosed
		case idle:
			return nil
		}
		select {
		case <-ctx.Done():
			s.Thaw()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Snapshot copies the frozen session's state.
func (s *Session) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := Snapshot{Key: s.key, ID: s.id, Transport: s.transport, Request: s.req.request(), Opened: s.opened}
	for _, q := range s.out {
		sn.Out = append(sn.Out, q.msg)
	}
	for _, q := range s.inQ[s.inHead:] {
		sn.In = append(sn.In, q.msg)
	}
	return sn
}

// Thaw undoes Freeze: the session goes on here.
func (s *Session) Thaw() {
	s.mu.Lock()
	if s.handoff != hoFrozen {
		s.mu.Unlock()
		return
	}
	s.handoff = hoNone
	close(s.handoffEnd)
	s.mu.Unlock()
	s.wake()
}

// Done ends the frozen session here: it lives on another node from now
// on. Its queues are dropped (the snapshot has them), its context ends,
// and its receiver, if one is attached, gets a heartbeat and its answer
// ends normally, so that the client asks again. Receivers that come later
// get the same. Observer.SessionClosed counts it as CauseShutdown.
func (s *Session) Done() {
	s.mu.Lock()
	if s.handoff != hoFrozen {
		s.mu.Unlock()
		return
	}
	s.handoff = hoDone
	s.state = stateClosing
	s.closeCode, s.closeReason = CodeGoingAway, ReasonGoingAway
	clear(s.out)
	s.out, s.outBytes = nil, 0
	clear(s.inQ)
	s.inQ, s.inHead, s.inBytes = nil, 0, 0
	close(s.handoffEnd)
	s.mu.Unlock()
	s.cancel()
	s.opts.Observer.SessionClosed(s.transport, CauseShutdown, time.Duration(now()-s.created))
	s.wake()
}

// lastFrame is what a receiver of a handed-off session gets: a heartbeat,
// after which its answer ends normally.
var lastFrame = Frame{Kind: FrameHeartbeat, Last: true}

// Restore registers a session made from a snapshot another node took: the
// same URL session id and opaque id, its open frame counted as written
// when it was, its queues as they were. created is false when a session
// with that id is live here already (it is returned instead).
func (r *Registry) Restore(sn Snapshot) (s *Session, created bool, err error) {
	sh := r.shard(sn.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := sh.m[sn.Key]; s != nil {
		return s, false, nil
	}
	if !r.reserve() {
		return nil, false, ErrTooMany
	}
	s = newSession(sn.Key, sn.Transport, sn.Request, &r.opts, r)
	if sn.ID != "" {
		s.id = sn.ID
	}
	s.opened = sn.Opened
	if sn.Opened {
		s.state = stateOpen
	}
	at := now()
	for _, m := range sn.Out {
		s.out = append(s.out, queued{msg: m, at: at})
		s.outBytes += len(m)
	}
	for _, m := range sn.In {
		s.inQ = append(s.inQ, queued{msg: m, at: at})
		s.inBytes += len(m) + RecvEntryBytes
	}
	sh.m[sn.Key] = s
	s.armExpiry()
	r.opts.Observer.SessionOpened(sn.Transport)
	return s, true, nil
}

// Release ends the answer of the receiving request attached to the
// session, as a streaming answer ends at its byte limit: a heartbeat
// frame marked Last, after which the answer ends normally and the client
// asks again; the session goes on. Messages queued are written first. It
// reports whether a receiver was attached to be released. A node that
// relays a receiving request to the session's owner asks for it when it
// stops (package cluster): a relay cut mid-answer would cost the client
// its session, which a normal end does not.
func (s *Session) Release() bool {
	s.mu.Lock()
	ok := s.attached && s.state < stateClosing && s.handoff == hoNone && !strings.HasPrefix(s.key, "ws/")
	if ok {
		s.releaseDue = true
		if s.conn != nil {
			s.hbDue = true // a pump's reason to run (pendingLocked)
		}
	}
	s.mu.Unlock()
	if ok {
		s.wake()
	}
	return ok
}
