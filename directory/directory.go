package directory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one live session as the directory knows it.
type Entry struct {
	// ID is the session's id, unique across the cluster (the proxy's
	// opaque id, not the client-chosen SockJS session path segment).
	ID string
	// Service is the SockJS service path, for example "/chat".
	Service string
	// User is the authenticated user, "" for an anonymous session (it then
	// has no user.online or user.offline events).
	User string
	// Transport is the SockJS transport, for example "websocket".
	Transport string
	// Node names the node holding the session: where a send is routed.
	Node string
	// Remote is the client's address.
	Remote string
	// Opened is when the session was accepted. Zero in Add: the
	// directory's clock (Redis's TIME for the Redis directory).
	Opened time.Time
}

// Directory is where every session lives and who is online. Both
// implementations (Memory for one node, Redis for many) emit the same
// events in the same order; see the package documentation.
type Directory interface {
	// Add records an accepted session and enqueues session.opened, then
	// user.online when it is the user's first live session across the
	// cluster. A user whose user.offline was pending (inside OfflineDelay)
	// gets neither: they never went offline. Adding an id this node holds
	// already is a no-op (a retry after a lost reply); an id another node
	// holds is ErrExists.
	Add(ctx context.Context, e Entry) error
	// Remove records the session's end and enqueues session.closed with
	// code and reason; when it was the user's last session, user.offline
	// follows after OfflineDelay unless a session of that user is added
	// before. Removing an unknown id (never added, removed already, or
	// closed by a reaper as lost) is no error and emits nothing.
	Remove(ctx context.Context, id string, code int, reason string) error
	// Lookup returns the live session id.
	Lookup(ctx context.Context, id string) (Entry, bool, error)
	// ByUser returns up to the directory's MaxByUser live sessions of
	// user, in no particular order.
	ByUser(ctx context.Context, user string) ([]Entry, error)
	// Close stops the directory's timers and loops; later calls return
	// ErrClosed.
	Close() error
}

// Errors.
var (
	// ErrExists: Add of an id another node holds.
	ErrExists = errors.New("directory: session id exists on another node")
	// ErrClosed: the directory was closed.
	ErrClosed = errors.New("directory: closed")
	// ErrNoID: Add of an entry without an id.
	ErrNoID = errors.New("directory: entry without an id")
)

// The session.closed code and reason of a session whose node stopped
// refreshing it (killed, partitioned from Redis past the TTL): the
// connection ended without a close frame, which WebSocket's 1006
// (abnormal closure) means.
const (
	CodeNodeLost   = 1006
	ReasonNodeLost = "Node lost"
)

// The session.closed code and reason the Redis directory uses for a
// session whose Add failed with an error (Redis down, a timeout) and was
// not added again before its cleanup: if the failed Add was in fact
// applied, the record it left is removed with these, so that no session
// the proxy gave up on stays online.
const (
	CodeAddFailed   = 1011
	ReasonAddFailed = "Directory error"
)

// Defaults shared by both directories.
const (
	DefaultOfflineDelay = 5 * time.Second
	DefaultMaxByUser    = 1000
)

// offlineDelay resolves an OfflineDelay option: 0 is the default,
// negative is none.
func offlineDelay(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultOfflineDelay
	case d < 0:
		return 0
	}
	return d
}

func maxByUser(n int) int {
	if n <= 0 {
		return DefaultMaxByUser
	}
	return n
}

// eventID is a webhook event id: 16 crypto-random bytes in hex, so that a
// receiver can drop repeats of an at-least-once delivery.
func eventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fullLog counts events dropped because the queue was full and logs once
// per episode (the first drop after an accepted event), so that a full
// queue does not flood the log with one line per event.
type fullLog struct {
	log     *slog.Logger
	dropped atomic.Int64
	mu      sync.Mutex
	full    bool
}

func (f *fullLog) drop(n int, what string) {
	if n <= 0 {
		return
	}
	f.dropped.Add(int64(n))
	f.mu.Lock()
	first := !f.full
	f.full = true
	f.mu.Unlock()
	if first {
		f.log.Warn("directory: webhook queue full, dropping events until it drains", "where", what)
	}
}

func (f *fullLog) ok() {
	f.mu.Lock()
	if f.full {
		f.full = false
		f.log.Info("directory: webhook queue accepts events again", "dropped_total", f.dropped.Load())
	}
	f.mu.Unlock()
}
