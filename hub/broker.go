package hub

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Message is one publish on a channel, as the broker delivers it.
type Message struct {
	Channel string
	// Epoch names one life of the channel's sequence: it changes when
	// the broker forgot the channel (idle past its history TTL, a Redis
	// restart) and its seq started again from 1.
	Epoch string
	Seq   uint64 // per channel, from 1, assigned by the broker
	Data  json.RawMessage
}

// Position is where a channel's sequence stands: its epoch and the seq of
// its latest message (0 if none).
type Position struct {
	Epoch string
	Seq   uint64
}

// History is what a broker still holds of a channel after some seq.
type History struct {
	Position // the channel's position when History was read
	// Messages are the messages with seq > since still held, in order, at
	// most limit: when Complete is false, some before the first of them
	// were forgotten (a caller that must not skip any checks Complete).
	Messages []Message
	Complete bool // Messages start right after since: nothing in between was forgotten
}

// Broker carries publishes between the hub's nodes. The memory broker is
// the embedded default for one process; the Redis broker takes its place
// for many nodes. The hub never assumes which: sequence numbers, history
// and subscriber counts come from the broker.
type Broker interface {
	// Publish assigns the channel's next sequence number, keeps the
	// message in the channel's history and delivers it to every node
	// subscribed to the channel, in sequence order.
	Publish(ctx context.Context, channel string, data json.RawMessage) (uint64, error)
	// Subscribe delivers the channel's messages to fn on this node, one
	// at a time, in order, with no duplicate within an epoch, until the
	// returned cancel is called. Every message published after Subscribe
	// returns is delivered, except when the broker could not receive some
	// and its history no longer holds them (the Redis broker after a
	// reconnect): then the seq jumps, and the hub tells its subscribers
	// (recovered:false). fn must not block.
	Subscribe(ctx context.Context, channel string, fn func(Message)) (cancel func(), err error)
	// Position is the channel's epoch and latest sequence number.
	Position(ctx context.Context, channel string) (Position, error)
	// History returns up to limit messages with seq > since still held,
	// oldest first, and whether they reach back to since (Complete).
	History(ctx context.Context, channel string, since uint64, limit int) (History, error)
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

// HistoryOptions are the history settings both brokers share.
type HistoryOptions struct {
	// Size is how many messages each channel keeps. Default 100;
	// negative: no history.
	Size int
	// TTL is how long a message stays in history. Default 5m.
	TTL time.Duration
}

// Default history settings.
const (
	DefaultHistorySize = 100
	DefaultHistoryTTL  = 5 * time.Minute
)

func (o HistoryOptions) withDefaults() HistoryOptions {
	if o.Size == 0 {
		o.Size = DefaultHistorySize
	}
	if o.Size < 0 {
		o.Size = 0
	}
	if o.TTL <= 0 {
		o.TTL = DefaultHistoryTTL
	}
	return o
}
