package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store records which node owns each HTTP session. Keys are "<service
// prefix>/<session id>"; nodes are the base URLs other nodes reach them
// at. RedisStore implements it on Redis; any store with an atomic
// compare-and-set, expiring keys and a way to tell that it lost its
// records can.
type Store interface {
	// Owner returns the node owning key, or "" when there is none. While
	// the store is recovering from the loss of its records (see
	// ErrRecovering) a key without an owner is reported as that error
	// instead of "".
	Owner(ctx context.Context, key string) (string, error)
	// Claim makes node the owner of key if key has no owner, is owned by
	// node already, or (when stale is not "") is owned by stale. It
	// returns the owner after the call: node on success. While the store
	// is recovering it claims nothing and returns ErrRecovering.
	Claim(ctx context.Context, key, node, stale string) (string, error)
	// Keep extends the life of the keys node owns, restores those the
	// store lost (for example after a restart), and returns the keys
	// another node owns now: node must stop serving those.
	Keep(ctx context.Context, keys []string, node string) (lost []string, err error)
	// Release deletes the keys that node still owns.
	Release(ctx context.Context, keys []string, node string) error
	// Generation names the store's current set of records. It changes
	// when the store lost them (a restart without persistence), which
	// starts the store's recovery grace; every node then puts its
	// records back at once. Called every Options.CheckInterval.
	Generation(ctx context.Context) (string, error)
}

// ErrRecovering is returned (possibly as a *RecoveringError) by
// Store.Owner and Store.Claim during the store's recovery grace: the store
// lost its records recently and the owners are putting theirs back, so a
// key without an owner may still have one. A request waits for the grace
// to end rather than taking a live session from its owner.
var ErrRecovering = errors.New("session owner store is recovering its records")

// RecoveringError is ErrRecovering with the time left in the grace.
type RecoveringError struct{ Left time.Duration }

func (e *RecoveringError) Error() string {
	return fmt.Sprintf("%v (%s left)", ErrRecovering, e.Left.Round(time.Millisecond))
}

// Unwrap makes errors.Is(err, ErrRecovering) true.
func (e *RecoveringError) Unwrap() error { return ErrRecovering }

// HandOffStore is a Store that can also hold a session's state between
// the node that hands it off (a node draining for a restart) and the node
// that resumes it. RedisStore is one. A Node whose store is not one
// hands nothing off: its sessions end at shutdown as before.
type HandOffStore interface {
	// HandOff replaces node's ownership of key with a hand-off record
	// holding state, which lives for ttl unless taken. It returns
	// ErrNotOwner (wrapped) when another node owns key.
	HandOff(ctx context.Context, key, node string, state []byte, ttl time.Duration) error
	// Take makes node the owner of key if key holds a hand-off record,
	// and returns the record's state; only one caller gets it. owner is
	// the owner after the call: node on success, HandOffOwner never.
	Take(ctx context.Context, key, node string) (state []byte, owner string, err error)
}

// HandOffOwner is what Store.Owner (and Claim) return for a key that holds
// a hand-off record: the session waits for a node to take it.
const HandOffOwner = "handoff"

// ErrNotOwner is HandOff's error when another node owns the key.
var ErrNotOwner = errors.New("session owned by another node")
