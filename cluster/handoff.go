package cluster

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Session hand-off (transport.ClusterHandOff): a draining node replaces
// its ownership of each session with a hand-off record holding the
// session's state (HandOffStore.HandOff). The session's next request,
// wherever the balancer sends it, finds HandOffOwner in the store; the
// node it reached takes the record (HandOffStore.Take, which one node
// only wins) and resumes the session before serving the request
// (ClusterService.Resume). Requests that still reach the draining node:
//   - a receiving request finds the session's stub there, which answers
//     with a heartbeat and ends, so that the client asks again;
//   - a receiving request forwarded by another node is answered 421 with
//     the store's owner (HandOffOwner or the node that took it), which
//     the forwarding node follows;
//   - a send waits for a node to take the session and is forwarded
//     there (Redirect): a failed send would close the client's session.

// DefaultHandOffTTL is how long a hand-off record waits for its session's
// next request when Options.HandOffTTL is zero.
const DefaultHandOffTTL = 30 * time.Second

// redirectPoll is how often Redirect reads the store while it waits for
// a node to take a session: the client's next receiving request, which
// triggers the take, follows the stub's answer within milliseconds.
const redirectPoll = 20 * time.Millisecond

// handOffStore is the node's store as a HandOffStore, or nil.
func (n *Node) handOffStore() HandOffStore {
	hs, _ := n.opts.Store.(HandOffStore)
	return hs
}

// HandOff implements transport.ClusterHandOff.
func (m *member) HandOff(ctx context.Context, sid string, state []byte) error {
	n := m.n
	hs := n.handOffStore()
	if hs == nil {
		return errors.New("cluster: the store cannot hold hand-off records")
	}
	key := m.key(sid)
	// Neither kept nor released by this node again, from before the
	// record is written: a keep loop's sweep that took the owned list
	// before and refreshes after it finds another value in the key, and
	// must not take the session for a copy another node owns (it would
	// close it: a close request to the backend, a session.closed
	// webhook, for a session that only moved).
	m.mu.Lock()
	s := m.owned[sid]
	delete(m.owned, sid)
	m.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, n.opts.StoreTimeout)
	defer cancel()
	if err := hs.HandOff(sctx, key, n.opts.Self, state, n.opts.HandOffTTL); err != nil {
		if s != nil {
			m.mu.Lock()
			m.owned[sid] = s // it stays here (thawed or closed by the transport)
			m.mu.Unlock()
		}
		return err
	}
	n.cache.drop(key)
	return nil
}

// take resumes a handed-off session here, or learns which node did:
// owner is n.opts.Self when the session is here now (or another request
// of this node is resuming it and did so), the node that took it
// otherwise, "" when the store failed (the request was answered).
func (m *member) take(w http.ResponseWriter, r *http.Request, sid string) (owner string) {
	n := m.n
	hs := n.handOffStore()
	m.mu.Lock()
	if ch := m.resuming[sid]; ch != nil {
		m.mu.Unlock()
		return m.waitResumed(w, r, sid, ch)
	}
	if hs == nil || m.svc.Session(sid) != nil {
		m.mu.Unlock()
		return n.opts.Self
	}
	ch := make(chan struct{})
	m.resuming[sid] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.resuming, sid)
		m.mu.Unlock()
		close(ch)
	}()
	ctx, cancel := context.WithTimeout(r.Context(), n.opts.StoreTimeout)
	state, owner, err := hs.Take(ctx, m.key(sid), n.opts.Self)
	cancel()
	if err != nil {
		m.warn("taking a handed-off session failed", err)
		plainError(w, http.StatusServiceUnavailable, "Session store unavailable")
		return ""
	}
	if owner != n.opts.Self {
		return owner
	}
	if err := m.svc.Resume(sid, state); err != nil {
		m.svc.Logger().Warn("sockjs: cluster: resuming a handed-off session failed", "prefix", m.prefix, "err", err)
		plainError(w, http.StatusInternalServerError, "Session could not be resumed")
		return ""
	}
	return owner
}

// waitResumed waits for another request of this node to resume sid.
func (m *member) waitResumed(w http.ResponseWriter, r *http.Request, sid string, ch chan struct{}) string {
	select {
	case <-ch:
	case <-r.Context().Done():
		return ""
	}
	if m.svc.Session(sid) != nil {
		return m.n.opts.Self
	}
	// The take failed or another node won: ask the store.
	ctx, cancel := context.WithTimeout(r.Context(), m.n.opts.StoreTimeout)
	defer cancel()
	owner, err := m.n.opts.Store.Owner(ctx, m.key(sid))
	if err != nil || owner == "" || owner == HandOffOwner || owner == m.n.opts.Self {
		plainError(w, http.StatusServiceUnavailable, "Session is moving to another node")
		return ""
	}
	return owner
}

// resumingHere waits, when another request of this node is resuming sid,
// until it is done; false when the client left meanwhile.
func (m *member) resumingHere(r *http.Request, sid string) bool {
	m.mu.Lock()
	ch := m.resuming[sid]
	m.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// Redirect implements transport.ClusterHandOff: it waits, up to
// ForwardTimeout, for a node to take the session sid and forwards r
// there. Until then the session is not served anywhere, so r waits
// rather than fail: sockjs-client closes a session whose send failed.
func (m *member) Redirect(w http.ResponseWriter, r *http.Request, sid, endpoint string) {
	n := m.n
	deadline := time.NewTimer(n.opts.ForwardTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(redirectPoll)
	defer tick.Stop()
	key := m.key(sid)
loop:
	for tries := 0; ; {
		ctx, cancel := context.WithTimeout(r.Context(), n.opts.StoreTimeout)
		owner, err := n.opts.Store.Owner(ctx, key)
		cancel()
		if err == nil && owner != "" && owner != HandOffOwner && owner != n.opts.Self {
			res := m.forward(w, r, owner, endpoint)
			if res.answered {
				return
			}
			if tries++; tries >= forwardTries {
				break loop
			}
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			break loop
		case <-r.Context().Done():
			return
		}
	}
	m.svc.Logger().Warn("sockjs: cluster: no node took a handed-off session in time", "prefix", m.prefix)
	plainError(w, http.StatusServiceUnavailable, "Session is moving to another node")
}

// movedTo answers a request another node forwarded here for a session
// this node handed off: 421 naming the store's owner (HandOffOwner until
// a node takes it), which the forwarding node follows. A send is
// redirected instead: its body is on its way, it cannot be sent again.
func (m *member) movedTo(w http.ResponseWriter, r *http.Request, sid, endpoint string) {
	if !receiving(endpoint) {
		m.Redirect(w, r, sid, endpoint)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), m.n.opts.StoreTimeout)
	owner, err := m.n.opts.Store.Owner(ctx, m.key(sid))
	cancel()
	if err != nil || owner == "" || owner == m.n.opts.Self {
		owner = HandOffOwner
	}
	w.Header().Set(OwnerHeader, owner)
	plainError(w, http.StatusMisdirectedRequest, "Session handed off to another node")
}

// reforwardedHeader marks a send that a node passed on once more
// (strayForwardedSend): it is not passed on again, so that nodes that
// disagree about an owner cannot bounce it for ever.
const reforwardedHeader = "X-Sockjsd-Reforwarded"

// strayForwardedSend handles a send another node forwarded here for a
// session this node does not have: the forwarding node's owner was
// stale (a cached owner that handed the session off, restarted since).
// The store knows where the session is: a handed-off record is taken
// and the session resumed here (false: serve it), another owner gets the
// send (once; true). A send that cannot be placed is served here as
// before: 404, an unknown session.
func (m *member) strayForwardedSend(w http.ResponseWriter, r *http.Request, sid, endpoint string) bool {
	if r.Header.Get(reforwardedHeader) != "" {
		return false
	}
	n := m.n
	ctx, cancel := context.WithTimeout(r.Context(), n.opts.StoreTimeout)
	owner, err := n.opts.Store.Owner(ctx, m.key(sid))
	cancel()
	switch {
	case err != nil || owner == "" || owner == n.opts.Self:
		return false
	case owner == HandOffOwner:
		if !m.svc.Accepting() {
			m.Redirect(w, r, sid, endpoint)
			return true
		}
		if owner = m.take(w, r, sid); owner == "" {
			return true // answered
		}
		if owner == n.opts.Self {
			return false
		}
	}
	r.Header.Set(reforwardedHeader, "1")
	if res := m.forward(w, r, owner, endpoint); !res.answered {
		plainError(w, http.StatusBadGateway, "Session owner unavailable")
	}
	return true
}
