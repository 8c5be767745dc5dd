package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// HandOff is a service's opt-in to session hand-off in cluster mode: when
// a node drains (Handler.HandOff, before Shutdown), each of its HTTP
// sessions is moved to whichever node the client's next request reaches,
// under the same session id, and the client notices nothing: no close
// frame, no message lost or repeated. The transport moves the session's
// own state (its queues, its request, whether the open frame was
// written); HandOff moves the application's.
//
// Websocket sessions are their connection and are not handed off: they
// end with 1001 at Shutdown, as do the sessions of services without a
// HandOff. The hub implements it (hub.Hub.Export and Resume).
type HandOff interface {
	// Export runs on the draining node for a session that is frozen:
	// nothing is written to its client and no message from the client is
	// handed to the application until it ends. It must stop whatever
	// sends to the session (so that no Send comes after it returns) and
	// return the state Resume needs, which should stay small: it is
	// stored in the cluster's store, bounded by
	// Options.MaxHandOffBytes with the session's queues. When the
	// session's Context is done afterwards, Session.HandedOff tells
	// whether it moved or the hand-off failed and it was closed.
	Export(s *session.Session) ([]byte, error)
	// Resume runs on the node that resumes the session, in place of the
	// service's handler function, with what Export returned. Messages
	// the client sent that the application had not taken yet are
	// waiting in the session (Recv, or OnMessage's first calls), after
	// those the client sends next. An error closes the session with
	// 1001, as a shutdown would have.
	Resume(s *session.Session, state []byte) error
}

// HandOffObserver, when Options.Session.Observer implements it too,
// counts sessions handed off by this node and resumed on it
// (sockjs_sessions_handed_off_total, sockjs_sessions_resumed_total).
type HandOffObserver interface {
	SessionHandedOff(t session.Transport)
	SessionResumed(t session.Transport)
}

// DefaultMaxHandOffBytes bounds one session's hand-off record when
// Options.MaxHandOffBytes is zero: the send and receive queues at their
// default limits, and 1 MiB for the application's state.
const DefaultMaxHandOffBytes = engine.DefaultSendQueueBytes + engine.DefaultRecvQueueBytes + 1<<20

// handOffRecord is what the store holds for a handed-off session.
type handOffRecord struct {
	Session engine.Snapshot `json:"session"`
	App     []byte          `json:"app,omitempty"`
}

// HandOffResult is what Handler.HandOff did.
type HandOffResult struct {
	HandedOff int // sessions now on their way to another node
	Failed    int // sessions that could not be (closed with 1001 instead)
}

// handOffWorkers bounds the sessions handed off at once: each is a few
// store round trips, and a drain must not starve the requests it serves.
const handOffWorkers = 8

// freezeTimeout bounds waiting for one session's writes and sends in
// flight: a send body still arriving holds it up to BodyReadTimeout.
const freezeTimeout = 3 * time.Second

// HandOff hands every HTTP session of the service off to the cluster, for
// another node to resume (see the HandOff interface): the first step of
// a drain, before Shutdown. From the moment it is called the service
// opens no new session. Sessions it could not hand off before ctx ended,
// or whose record is over Options.MaxHandOffBytes, are closed with 1001.
// It does nothing without Options.HandOff or outside cluster mode (or on
// a store that holds no state).
func (h *Handler) HandOff(ctx context.Context) HandOffResult {
	co, ok := h.cluster.(ClusterHandOff)
	if h.opts.HandOff == nil || !ok {
		return HandOffResult{}
	}
	h.closing.Store(true)
	work := make(chan *engine.Session)
	var handed, failed atomic.Int64
	var wg sync.WaitGroup
	for range handOffWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				if err := h.handOffOne(ctx, co, s); err != nil {
					failed.Add(1)
					if !errors.Is(err, engine.ErrClosed) {
						h.log.Info("sockjs: session not handed off, closing it", "prefix", h.prefix, "session", s.ID(), "err", err)
					}
					s.CloseWith(session.CodeGoingAway, session.ReasonGoingAway, session.CauseShutdown)
					continue
				}
				handed.Add(1)
			}
		}()
	}
	h.reg.Range(func(s *engine.Session) {
		if s.HandOffable() {
			work <- s
		}
	})
	close(work)
	wg.Wait()
	return HandOffResult{HandedOff: int(handed.Load()), Failed: int(failed.Load())}
}

// handOffOne freezes s, takes the application's state and the session's,
// and stores them; then the session ends here without a close frame.
func (h *Handler) handOffOne(ctx context.Context, co ClusterHandOff, s *engine.Session) error {
	fctx, cancel := context.WithTimeout(ctx, freezeTimeout)
	err := s.Freeze(fctx)
	cancel()
	if err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	app, err := h.opts.HandOff.Export((*session.Session)(s))
	if err != nil {
		s.Thaw()
		return fmt.Errorf("export: %w", err)
	}
	rec := handOffRecord{Session: s.Snapshot(), App: app}
	if n := rec.Session.Bytes() + len(app); n > h.opts.MaxHandOffBytes {
		s.Thaw()
		h.limitHit(s.Transport(), session.LimitHandOff)
		return fmt.Errorf("hand-off record of %d bytes over the limit of %d", n, h.opts.MaxHandOffBytes)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		s.Thaw()
		return err
	}
	if err := co.HandOff(ctx, rec.Session.Key, b); err != nil {
		s.Thaw()
		return err
	}
	s.Done()
	if o, ok := h.obs.(HandOffObserver); ok {
		o.SessionHandedOff(s.Transport())
	}
	return nil
}

// resume makes a session from a hand-off record (ClusterService.Resume).
func (h *Handler) resume(sid string, state []byte) error {
	var rec handOffRecord
	if err := json.Unmarshal(state, &rec); err != nil {
		return fmt.Errorf("sockjs %s: hand-off record of %s: %w", h.prefix, sid, err)
	}
	if rec.Session.Key != sid || strings.HasPrefix(sid, "ws/") {
		return fmt.Errorf("sockjs %s: hand-off record for %q found under %q", h.prefix, rec.Session.Key, sid)
	}
	s, created, err := h.reg.Restore(rec.Session)
	if err != nil {
		h.limitHit(rec.Session.Transport, session.LimitSessions)
		return err
	}
	if !created {
		return nil
	}
	if h.cluster != nil {
		h.cluster.Opened(sid, (*session.Session)(s))
	}
	if o, ok := h.obs.(HandOffObserver); ok {
		o.SessionResumed(s.Transport())
	}
	if h.opts.HandOff == nil {
		s.CloseWith(session.CodeGoingAway, session.ReasonGoingAway, session.CauseShutdown)
		return nil
	}
	h.startPing(s)
	if err := h.opts.HandOff.Resume((*session.Session)(s), rec.App); err != nil {
		h.log.Warn("sockjs: resuming a handed-off session failed, closing it", "prefix", h.prefix, "session", s.ID(), "err", err)
		s.CloseWith(session.CodeGoingAway, session.ReasonGoingAway, session.CauseError)
	}
	return nil
}

// handingOff passes a send request for a session being handed off from
// this node to the node that takes it (ClusterHandOff.Redirect), and
// reports whether it did. The caller holds a send slot, which Freeze
// waits for: a send that got its slot before the freeze is delivered
// here (and is in the snapshot), one after it is passed on.
func (h *Handler) handingOff(w http.ResponseWriter, r *http.Request, s *engine.Session) bool {
	if !s.HandingOff() {
		return false
	}
	s.ReleaseSendSlot()
	co, ok := h.cluster.(ClusterHandOff)
	if !ok {
		plainError(w, http.StatusServiceUnavailable, "Server is shutting down")
		return true
	}
	endpoint := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	co.Redirect(w, r, s.Key(), endpoint)
	return true
}
