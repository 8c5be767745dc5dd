package directory

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/webhook"
)

// MemoryOptions configure a Memory directory. Zero values mean the
// documented defaults.
type MemoryOptions struct {
	// Events receives the lifecycle events. Default nil: no webhooks
	// (lookups work all the same). Enqueue is called with the
	// directory's lock held, so that a user's events keep their order: it
	// must not block (a full queue returns webhook.ErrQueueFull).
	Events webhook.Queue
	// OfflineDelay is how long after a user's last session closed
	// user.offline is sent, unless a session of theirs is added meanwhile
	// (a page reload, a reconnect). Default 5s; negative: at once.
	OfflineDelay time.Duration
	// MaxByUser bounds ByUser's answer. Default 1000.
	MaxByUser int
	// MaxSessions bounds the sessions held: Add beyond it is ErrFull.
	// Default 1,000,000 (about 300 MB at most).
	MaxSessions int
	// Logger reports a full queue (once per episode). Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultMaxSessions is MemoryOptions.MaxSessions's default.
const DefaultMaxSessions = 1_000_000

// ErrFull: the Memory directory holds MaxSessions sessions.
var ErrFull = errors.New("directory: full")

// Memory is the Directory of one node: maps, and one timer for the
// earliest pending user.offline. Events are enqueued under its lock, in
// the order of the state changes.
type Memory struct {
	opts  MemoryOptions
	delay time.Duration
	full  fullLog

	mu       sync.Mutex
	sessions map[string]Entry
	users    map[string]map[string]struct{} // user → ids
	due      map[string]time.Time           // user → when their offline is due
	queue    dueHeap                        // the due times, earliest first (stale ones skipped)
	timer    *time.Timer
	closed   bool
}

// NewMemory returns a directory for one node.
func NewMemory(o MemoryOptions) *Memory {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.MaxByUser = maxByUser(o.MaxByUser)
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	m := &Memory{
		opts: o, delay: offlineDelay(o.OfflineDelay), full: fullLog{log: o.Logger},
		sessions: map[string]Entry{}, users: map[string]map[string]struct{}{}, due: map[string]time.Time{},
	}
	return m
}

// Add implements Directory.
func (m *Memory) Add(ctx context.Context, e Entry) error {
	if e.ID == "" {
		return ErrNoID
	}
	if e.Opened.IsZero() {
		e.Opened = time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if old, ok := m.sessions[e.ID]; ok {
		if old.Node == e.Node {
			return nil
		}
		return ErrExists
	}
	if len(m.sessions) >= m.opts.MaxSessions {
		return ErrFull
	}
	m.sessions[e.ID] = e
	now := time.Now()
	m.emit(ctx, sessionEvent(webhook.SessionOpened, e, now))
	if e.User == "" {
		return nil
	}
	ids := m.users[e.User]
	if ids == nil {
		ids = map[string]struct{}{}
		m.users[e.User] = ids
	}
	ids[e.ID] = struct{}{}
	if len(ids) > 1 {
		return nil
	}
	if _, pending := m.due[e.User]; pending {
		// Back inside the delay: they never went offline.
		delete(m.due, e.User)
		return nil
	}
	on := sessionEvent(webhook.UserOnline, e, now)
	m.emit(ctx, on)
	return nil
}

// Adopt records a session that moved here from another node (a
// hand-off): an entry of another node becomes e, and no event is
// emitted; without one it is Add. It is what the Redis directory does,
// for a Memory shared by the nodes of a test.
func (m *Memory) Adopt(ctx context.Context, e Entry) error {
	m.mu.Lock()
	if old, ok := m.sessions[e.ID]; ok && !m.closed {
		e.Opened = old.Opened
		m.sessions[e.ID] = e
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	return m.Add(ctx, e)
}

// Forget does nothing: a Memory keeps no per-node state (see
// Redis.Forget).
func (m *Memory) Forget(string) {}

// Remove implements Directory.
func (m *Memory) Remove(ctx context.Context, id string, code int, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	e, ok := m.sessions[id]
	if !ok {
		return nil
	}
	delete(m.sessions, id)
	now := time.Now()
	ev := sessionEvent(webhook.SessionClosed, e, now)
	ev.Code, ev.Reason = code, reason
	m.emit(ctx, ev)
	if e.User == "" {
		return nil
	}
	ids := m.users[e.User]
	delete(ids, id)
	if len(ids) > 0 {
		return nil
	}
	delete(m.users, e.User)
	if m.delay <= 0 {
		m.emit(ctx, webhook.Event{ID: eventID(), Type: webhook.UserOffline, Time: now, User: e.User})
		return nil
	}
	at := now.Add(m.delay)
	m.due[e.User] = at
	heap.Push(&m.queue, dueItem{user: e.User, at: at})
	m.arm()
	return nil
}

// arm sets the timer to the earliest due offline (under mu).
func (m *Memory) arm() {
	if len(m.queue) == 0 {
		return
	}
	d := time.Until(m.queue[0].at)
	if m.timer == nil {
		m.timer = time.AfterFunc(d, m.sweep)
		return
	}
	m.timer.Reset(d)
}

// sweep emits the offlines that are due, earliest first, and rearms.
func (m *Memory) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	now := time.Now()
	for len(m.queue) > 0 && !m.queue[0].at.After(now) {
		it := heap.Pop(&m.queue).(dueItem)
		m.offline(it)
	}
	m.arm()
}

// offline emits it's user.offline unless it is stale: the user came back
// (no longer due) or went again later (due at another time).
func (m *Memory) offline(it dueItem) {
	if at, ok := m.due[it.user]; !ok || !at.Equal(it.at) {
		return
	}
	delete(m.due, it.user)
	if len(m.users[it.user]) > 0 {
		return
	}
	m.emit(context.Background(), webhook.Event{ID: eventID(), Type: webhook.UserOffline, Time: time.Now(), User: it.user})
}

func (m *Memory) emit(ctx context.Context, e webhook.Event) {
	if m.opts.Events == nil {
		return
	}
	// The state changed already: a caller's cancellation must not lose
	// the event that tells of it.
	if err := m.opts.Events.Enqueue(context.WithoutCancel(ctx), e); err != nil {
		m.full.drop(1, err.Error())
		return
	}
	m.full.ok()
}

// Lookup implements Directory.
func (m *Memory) Lookup(_ context.Context, id string) (Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Entry{}, false, ErrClosed
	}
	e, ok := m.sessions[id]
	return e, ok, nil
}

// ByUser implements Directory.
func (m *Memory) ByUser(_ context.Context, user string) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []Entry
	for id := range m.users[user] {
		if len(out) == m.opts.MaxByUser {
			break
		}
		out = append(out, m.sessions[id])
	}
	return out, nil
}

// Close implements Directory. The offlines still pending are sent at
// once: with this one node gone, nobody can come back inside the delay.
// Sessions not removed are dropped without events.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	for len(m.queue) > 0 {
		m.offline(heap.Pop(&m.queue).(dueItem))
	}
	m.closed = true
	return nil
}

// sessionEvent is a session's event of type typ, without code and reason.
func sessionEvent(typ string, e Entry, now time.Time) webhook.Event {
	return webhook.Event{
		ID: eventID(), Type: typ, Time: now, Session: e.ID, Service: e.Service, User: e.User,
		Transport: e.Transport, Node: e.Node, Remote: e.Remote,
	}
}

type dueItem struct {
	user string
	at   time.Time
}

// dueHeap is a min-heap of due offlines by time.
type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// Dropped is how many events the queue refused (webhook.ErrQueueFull or
// another error).
func (m *Memory) Dropped() int64 { return m.full.dropped.Load() }
