package engine

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// numShards spreads sessions over independent locks so that lookups on the
// hot path (every xhr_send, every poll) do not contend on one mutex.
const numShards = 64

// Registry holds a service's live sessions, keyed by the session id from
// the URL. It is safe for concurrent use and never holds a lock while a
// session does I/O.
type Registry struct {
	opts   Options
	max    int
	count  atomic.Int64
	seed   maphash.Seed
	shards [numShards]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*Session
}

// DefaultMaxSessions is the default bound on live sessions per registry.
const DefaultMaxSessions = 100_000

// NewRegistry returns an empty registry whose sessions use opts. maxSessions
// bounds the number of live sessions (0 means DefaultMaxSessions).
func NewRegistry(opts Options, maxSessions int) *Registry {
	if maxSessions <= 0 {
		maxSessions = DefaultMaxSessions
	}
	r := &Registry{opts: opts.WithDefaults(), max: maxSessions, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*Session)
	}
	return r
}

// Options returns the options (with defaults applied) that sessions use.
func (r *Registry) Options() Options { return r.opts }

func (r *Registry) shard(key string) *shard {
	return &r.shards[maphash.String(r.seed, key)%numShards]
}

// Get returns the session with the given URL session id, or nil.
func (r *Registry) Get(sid string) *Session {
	sh := r.shard(sid)
	sh.mu.RLock()
	s := sh.m[sid]
	sh.mu.RUnlock()
	return s
}

// GetOrCreate returns the session with URL session id sid, creating it if
// there is none. created reports a new session, whose application handler
// the caller must start. It returns ErrTooMany past the session limit.
func (r *Registry) GetOrCreate(sid string, t Transport, req func() Request) (s *Session, created bool, err error) {
	if s := r.Get(sid); s != nil {
		return s, false, nil
	}
	sh := r.shard(sid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := sh.m[sid]; s != nil {
		return s, false, nil
	}
	if !r.reserve() {
		return nil, false, ErrTooMany
	}
	s = newSession(sid, t, req(), &r.opts, r)
	sh.m[sid] = s
	s.armExpiry()
	r.opts.Observer.SessionOpened(t)
	return s, true, nil
}

// Create registers a session that has no URL session id of its own
// (websocket sessions, whose lifetime is their connection's: the protocol
// lets two of them share an id).
func (r *Registry) Create(t Transport, req Request) (*Session, error) {
	if !r.reserve() {
		return nil, ErrTooMany
	}
	s := newSession("", t, req, &r.opts, r)
	s.key = "ws/" + s.id // URL session ids never contain '/', so no clash
	sh := r.shard(s.key)
	sh.mu.Lock()
	sh.m[s.key] = s
	sh.mu.Unlock()
	r.opts.Observer.SessionOpened(t)
	return s, nil
}

func (r *Registry) reserve() bool {
	if r.count.Add(1) > int64(r.max) {
		r.count.Add(-1)
		return false
	}
	return true
}

func (r *Registry) remove(s *Session) {
	sh := r.shard(s.key)
	sh.mu.Lock()
	if sh.m[s.key] == s {
		delete(sh.m, s.key)
		r.count.Add(-1)
	}
	sh.mu.Unlock()
}

// Len is the number of live sessions.
func (r *Registry) Len() int { return int(r.count.Load()) }

// Range calls fn for every live session. fn runs without registry locks
// held, so it may call any Session method.
func (r *Registry) Range(fn func(*Session)) {
	var batch []*Session
	for i := range r.shards {
		sh := &r.shards[i]
		batch = batch[:0]
		sh.mu.RLock()
		for _, s := range sh.m {
			batch = append(batch, s)
		}
		sh.mu.RUnlock()
		for _, s := range batch {
			fn(s)
		}
	}
}

// CloseAll closes every live session with code and reason (for shutdown,
// c[1001,"Going away"]).
func (r *Registry) CloseAll(code int, reason string) {
	r.Range(func(s *Session) { s.CloseWith(code, reason, CauseShutdown) })
}
