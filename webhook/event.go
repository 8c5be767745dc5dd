package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"strconv"
	"time"
)

// Event types: the `type` of an Event.
const (
	SessionOpened = "session.opened"
	SessionClosed = "session.closed"
	UserOnline    = "user.online"
	UserOffline   = "user.offline"
)

// Event is one webhook: the JSON body of one POST to the webhook URL.
// The field names are a wire contract (docs/proxy.md): extend, never
// rename.
type Event struct {
	// ID is unique per event (crypto-random): a receiver that saw it
	// already drops the repeat (delivery is at least once).
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Session is the opaque session id (session.* events; for
	// user.online, the session that brought the user online).
	Session   string `json:"session,omitempty"`
	Service   string `json:"service,omitempty"`
	User      string `json:"user,omitempty"`
	Transport string `json:"transport,omitempty"`
	Node      string `json:"node,omitempty"`
	Remote    string `json:"remote,omitempty"`
	// Code and Reason are the close frame's, for session.closed.
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Partitions is the number of ordered queues events are spread over.
// Events of one user (or, without a user, of one session) always go to the
// same partition and are delivered one after the other, in order; the
// partitions are delivered in parallel.
const Partitions = 64

// OrderKey is what orders e: its user, else its session.
func (e Event) OrderKey() string {
	if e.User != "" {
		return "u:" + e.User
	}
	return "s:" + e.Session
}

// Partition is the partition of an order key.
func Partition(orderKey string) int {
	return int(crc32.ChecksumIEEE([]byte(orderKey)) % Partitions)
}

// RedisQueueKey is the Redis list holding partition p's events (JSON,
// RPUSH to append), under prefix (for example "sockjsd:"). Anything that
// must enqueue atomically with its own state change (the directory's Lua
// scripts) pushes to this key; the braces keep all of a prefix's keys in
// one Redis Cluster slot.
func RedisQueueKey(prefix string, p int) string {
	return prefix + "{webhook}:q:" + strconv.Itoa(p)
}

// RedisWakeChannel is the Redis pub/sub channel told a partition's number
// (PUBLISH, after the RPUSH) so that the node delivering it starts at
// once rather than at its next poll.
func RedisWakeChannel(prefix string) string {
	return prefix + "{webhook}:wake"
}

// Queue takes events to deliver. Enqueue returns once the event is kept
// (in memory, or in Redis in cluster mode), or ErrQueueFull.
type Queue interface {
	Enqueue(ctx context.Context, e Event) error
}

// ErrQueueFull: the queue holds its limit; the event was not kept. It is
// counted and logged once by the queue, not by each caller.
var ErrQueueFull = errors.New("webhook: queue full")

// NewID returns a new event id: 16 crypto-random bytes in hex, unique
// enough that a receiver can deduplicate on it alone.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
