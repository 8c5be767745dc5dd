package hub

import (
	"context"
	"encoding/json"
	"errors"
)

// Message is one publish on a channel, as the broker delivers it.
type Message struct {
	Channel string
	Seq     uint64 // per channel, from 1, assigned by the broker
	Data    json.RawMessage
}

// Broker carries publishes between the hub's nodes. The memory broker is
// the embedded default for one process; a networked broker (Redis) takes
// its place for many nodes. The hub never assumes which: sequence numbers
// and subscriber counts come from the broker.
type Broker interface {
	// Publish assigns the channel's next sequence number and delivers the
	// message to every node subscribed to the channel, in sequence order.
	Publish(ctx context.Context, channel string, data json.RawMessage) (uint64, error)
	// Subscribe delivers the channel's messages to fn on this node, one
	// at a time and in order, until the returned cancel is called. A node
	// subscribes once per channel and fans out to its own sessions.
	Subscribe(channel string, fn func(Message)) (cancel func(), err error)
	// LastSeq is the channel's latest sequence number (0 if none).
	LastSeq(ctx context.Context, channel string) (uint64, error)
	// AddPresence adds delta to this node's subscriber count for channel.
	AddPresence(channel string, delta int)
	// Presence is the channel's subscriber count over every node.
	Presence(ctx context.Context, channel string) (int, error)
	// Channels is the subscriber count of every channel with subscribers.
	Channels(ctx context.Context) (map[string]int, error)
	// Close releases the broker.
	Close() error
}

// ErrBrokerClosed is returned after Close.
var ErrBrokerClosed = errors.New("hub: broker closed")
