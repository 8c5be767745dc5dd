package transport

import (
	"context"
	"time"

	"github.com/sockjsd/sockjsd/internal/sessionapi"
	"github.com/sockjsd/sockjsd/session"
)

// track remembers a session this node created, so that its key is kept
// alive while it lives and released when it ends.
func (c *cluster) track(sid string, s *session.Session) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.owned[sid] = s
	c.mu.Unlock()
}

// keepLoop refreshes owned keys every KeepInterval and releases those of
// ended sessions. Between refreshes it reads the store's generation every
// CheckInterval: when the store comes back from an outage, or lost its
// records (a restart), the node refreshes at once, within the store's
// recovery grace, so that no other node takes a live session over in the
// meantime. It runs from New to Shutdown, sessions or not: a node that
// never read the generation could not tell a Redis that lost its records
// from a new one. One goroutine per service, not per session.
func (c *cluster) keepLoop() {
	defer close(c.done)
	t := time.NewTicker(c.opts.CheckInterval)
	defer t.Stop()
	var gen string
	up := true
	last := time.Now()
	for first := true; ; first = false {
		if !first {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
		g, err := c.opts.Owners.Generation(ctx)
		cancel()
		if err != nil {
			if up {
				c.warn("session owner store unreachable", err)
			}
			up = false
			continue
		}
		changed := gen != "" && g != gen
		if changed || !up || time.Since(last) >= c.opts.KeepInterval {
			if changed || !up {
				c.h.log.Info("sockjs: cluster: session owner store is back, putting records back", "prefix", c.h.prefix, "lost_records", changed)
			}
			if c.sweep() {
				gen, up, last = g, true, time.Now()
			} else {
				up = false // try again at the next check
			}
			continue
		}
		gen = g
	}
}

// sweep refreshes the keys of live sessions, releases those of ended ones,
// and closes the copies another node owns now. It reports whether the
// store took the refresh.
func (c *cluster) sweep() bool {
	var keep, release []string
	sids := map[string]string{} // key -> session id, of the keys kept
	c.mu.Lock()
	for sid, s := range c.owned {
		if c.h.reg.Get(sid) == s {
			keep = append(keep, c.key(sid))
			sids[c.key(sid)] = sid
		} else {
			release = append(release, c.key(sid))
			delete(c.owned, sid)
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.KeepInterval)
	defer cancel()
	lost, keepErr := c.opts.Owners.Keep(ctx, keep, c.opts.Self)
	if keepErr != nil {
		c.warn("keeping owned sessions failed", keepErr)
	}
	for _, k := range lost {
		c.mu.Lock()
		sid := sids[k]
		s := c.owned[sid]
		delete(c.owned, sid) // the key is another node's: never kept or released here again
		c.mu.Unlock()
		if s == nil {
			continue
		}
		// Both nodes served this id while the store could not tell
		// them apart (an outage). The store's owner keeps it; our copy
		// ends cleanly, and requests that still land here get its
		// close frame until it expires.
		c.h.log.Warn("sockjs: cluster: another node owns a session served here; closing this copy", "prefix", c.h.prefix, "session", s.ID())
		sessionapi.CloseFor(s, CodeOwnerConflict, ReasonOwnerConflict, session.ReasonError)
	}
	if err := c.opts.Owners.Release(ctx, release, c.opts.Self); err != nil {
		c.warn("releasing ended sessions failed", err)
	}
	return keepErr == nil
}

// shutdown stops the keep loop and releases every key this node holds.
func (c *cluster) shutdown() {
	if c == nil {
		return
	}
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
	c.mu.Lock()
	keys := make([]string, 0, len(c.owned))
	for sid := range c.owned {
		keys = append(keys, c.key(sid))
	}
	clear(c.owned)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
	defer cancel()
	if err := c.opts.Owners.Release(ctx, keys, c.opts.Self); err != nil {
		c.warn("releasing sessions at shutdown failed", err)
	}
}
