package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sockjsd/sockjsd/internal/bounded"
)

// keepLoop refreshes owned records every KeepInterval and releases those
// of ended sessions. Between refreshes it reads the store's generation
// every CheckInterval: when the store comes back from an outage, or lost
// its records (a restart), the node refreshes at once, within the store's
// recovery grace, so that no other node takes a live session over in the
// meantime. It runs while the node has members, sessions or not: a node
// that never read the generation could not tell a Redis that lost its
// records from a new one. One goroutine per node, not per session.
//
// Every store call is made under life, which the last Leave cancels
// before it waits for the loop (at most leaveWait): once it is done, the
// loop returns at its next step, and what a call Leave stopped waiting
// for brings back changes nothing (no log line, no session closed).
func (n *Node) keepLoop(life context.Context, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(n.opts.CheckInterval)
	defer t.Stop()
	var gen string
	up := true
	last := time.Now()
	for first := true; ; first = false {
		if !first {
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(life, n.opts.StoreTimeout)
		g, err := n.opts.Store.Generation(ctx)
		cancel()
		if life.Err() != nil {
			return // left: whatever the call brought back is not acted on
		}
		if err != nil {
			if up {
				n.warn("session owner store unreachable", err)
			}
			up = false
			continue
		}
		changed := gen != "" && g != gen
		if changed || !up || time.Since(last) >= n.opts.KeepInterval {
			switch {
			case !up:
				n.log.Info("sockjs: cluster: session owner store is back, putting records back", "lost_records", changed)
			case changed:
				// Also when the masters of a Redis Cluster changed
				// (one added, or a slot migration that moved a
				// master's lowest slot): the generation is read
				// from other keys then, and the records are put
				// back once, needlessly but harmlessly.
				n.log.Info("sockjs: cluster: session owner store's generation changed (its Redis lost its data, or a Redis Cluster's masters changed), putting records back")
			}
			if n.sweep(life) {
				gen, up, last = g, true, time.Now()
			} else {
				up = false // try again at the next check
			}
			continue
		}
		gen = g
	}
}

// sweep runs every member's sweep under life (see keepLoop) and reports
// whether the store took all of them.
func (n *Node) sweep(life context.Context) bool {
	n.mu.Lock()
	members := make([]*member, 0, len(n.members))
	for m := range n.members {
		members = append(members, m)
	}
	n.mu.Unlock()
	ok := true
	for _, m := range members {
		ok = m.sweep(life) && ok
	}
	return ok
}

// sweep refreshes the records of the member's live sessions, releases
// those of ended ones, and closes the copies another node owns now. It
// reports whether the store took the refresh. Once life is done (the node
// left) it acts on nothing the store answers.
func (m *member) sweep(life context.Context) bool {
	n := m.n
	var keep, release []string
	sids := map[string]string{} // key -> session id, of the keys kept
	m.mu.Lock()
	for sid, s := range m.owned {
		if m.svc.Session(sid) == s {
			keep = append(keep, m.key(sid))
			sids[m.key(sid)] = sid
		} else {
			release = append(release, m.key(sid))
			delete(m.owned, sid)
		}
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(life, n.opts.KeepInterval)
	defer cancel()
	lost, keepErr := n.opts.Store.Keep(ctx, keep, n.opts.Self)
	if life.Err() != nil {
		return false
	}
	if keepErr != nil {
		m.warn("keeping owned sessions failed", keepErr)
	}
	for _, k := range lost {
		m.mu.Lock()
		sid := sids[k]
		s := m.owned[sid]
		delete(m.owned, sid) // the record is another node's: never kept or released here again
		m.mu.Unlock()
		if s == nil {
			continue
		}
		// Both nodes served this id while the store could not tell
		// them apart (an outage). The store's owner keeps it; our copy
		// ends cleanly, and requests that still land here get its
		// close frame until it expires.
		m.svc.Logger().Warn("sockjs: cluster: another node owns a session served here; closing this copy", "prefix", m.prefix, "session", s.ID())
		_ = s.Close(CodeOwnerConflict, ReasonOwnerConflict)
	}
	if err := n.opts.Store.Release(ctx, release, n.opts.Self); err != nil && life.Err() == nil {
		m.warn("releasing ended sessions failed", err)
	}
	return keepErr == nil
}

// Leave implements transport.ClusterMember: it releases the records of
// every session the member holds, and stops the node's keep loop with the
// last member. It returns within twice StoreTimeout (4 s by default)
// whatever the store does, even when ctx is already done (a shutdown that
// ran out of time still releases): the last member cancels the keep
// loop's store calls, then waits at most StoreTimeout for the loop to
// return, then at most StoreTimeout for the release.
//
// The waits are bounded by timers, not by the calls' contexts: a
// go-redis client built without ContextTimeoutEnabled ends a command
// already waiting for Redis's answer only at its ReadTimeout (never with
// read_timeout=-1), not when the command's context is cancelled or its
// deadline passes, and each retry waits again. A call Leave stopped
// waiting for ends at that timeout or when the client is closed; the
// keep loop then changes nothing (keepLoop). Records whose release did
// not reach the store, or that a keep call Leave did not wait for put
// back, expire after the store's TTL, as a dead node's do.
func (m *member) Leave(ctx context.Context) error {
	n := m.n
	n.mu.Lock()
	_, was := n.members[m]
	delete(n.members, m)
	var stop, done chan struct{}
	if was && len(n.members) == 0 {
		stop, done = n.stop, n.done
		n.cancel()
	}
	n.mu.Unlock()
	if stop != nil {
		close(stop)
		if !bounded.Wait(done, n.opts.StoreTimeout) {
			n.log.Warn("sockjs: cluster: left the cluster before the keep loop returned (a store call unanswered)",
				"waited", n.opts.StoreTimeout)
		}
	}
	m.mu.Lock()
	keys := make([]string, 0, len(m.owned))
	for sid := range m.owned {
		keys = append(keys, m.key(sid))
	}
	clear(m.owned)
	m.mu.Unlock()
	released := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.StoreTimeout)
		defer cancel()
		released <- n.opts.Store.Release(ctx, keys, n.opts.Self)
	}()
	t := time.NewTimer(n.opts.StoreTimeout)
	defer t.Stop()
	var err error
	select {
	case err = <-released:
	case <-t.C:
		err = fmt.Errorf("no answer from the store within %v (%d records expire after its TTL)", n.opts.StoreTimeout, len(keys))
	}
	if err != nil {
		return errors.Join(errors.New("cluster: releasing this node's sessions"), err)
	}
	return nil
}

// warn logs store failures at most once every 10 seconds for the whole
// node: when the store is down every request would log otherwise.
// /readyz shows the outage.
func (n *Node) warn(msg string, err error, attrs ...any) {
	now := time.Now().UnixNano()
	last := n.lastWarn.Load()
	if now-last < int64(10*time.Second) || !n.lastWarn.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn("sockjs: cluster: "+msg, append(attrs, "err", err)...)
}

// warn is the node's warn naming the member's service.
func (m *member) warn(msg string, err error) { m.n.warn(msg, err, "prefix", m.prefix) }
