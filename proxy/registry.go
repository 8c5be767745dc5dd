package proxy

import "sync"

// registry is this node's proxied sessions, by opaque id and by user, for
// the server API.
type registry struct {
	mu     sync.RWMutex
	byID   map[string]*conn
	byUser map[string]map[*conn]struct{}
}

func newRegistry() registry {
	return registry{byID: map[string]*conn{}, byUser: map[string]map[*conn]struct{}{}}
}

func (r *registry) add(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[c.id] = c
	if c.user != "" {
		set := r.byUser[c.user]
		if set == nil {
			set = map[*conn]struct{}{}
			r.byUser[c.user] = set
		}
		set[c] = struct{}{}
	}
}

func (r *registry) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[c.id] != c {
		return
	}
	delete(r.byID, c.id)
	if set := r.byUser[c.user]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(r.byUser, c.user)
		}
	}
}

func (r *registry) get(id string) *conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

// user returns up to max of user's sessions.
func (r *registry) user(user string, max int) []*conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*conn, 0, min(len(r.byUser[user]), max))
	for c := range r.byUser[user] {
		if len(out) == max {
			break
		}
		out = append(out, c)
	}
	return out
}
