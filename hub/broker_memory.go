package hub

import (
	"context"
	"encoding/json"
	"sync"
)

// MemoryBroker is the in-process Broker: the embedded default.
type MemoryBroker struct {
	mu       sync.RWMutex
	channels map[string]*memChannel
	presence map[string]int
	closed   bool
}

type memChannel struct {
	mu   sync.Mutex // orders seq assignment and delivery
	seq  uint64
	next int
	subs map[int]func(Message)
}

// NewMemoryBroker returns an empty in-memory broker.
func NewMemoryBroker() *MemoryBroker {
	return &MemoryBroker{channels: map[string]*memChannel{}, presence: map[string]int{}}
}

func (b *MemoryBroker) channel(name string, create bool) *memChannel {
	b.mu.RLock()
	c := b.channels[name]
	b.mu.RUnlock()
	if c != nil || !create {
		return c
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c = b.channels[name]; c == nil {
		c = &memChannel{subs: map[int]func(Message){}}
		b.channels[name] = c
	}
	return c
}

// Publish implements Broker. Delivery runs under the channel's lock so
// that every subscriber sees the channel's messages in sequence order;
// the hub's delivery function never blocks (Session.Send queues).
func (b *MemoryBroker) Publish(_ context.Context, channel string, data json.RawMessage) (uint64, error) {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return 0, ErrBrokerClosed
	}
	c := b.channel(channel, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	m := Message{Channel: channel, Seq: c.seq, Data: data}
	for _, fn := range c.subs {
		fn(m)
	}
	return c.seq, nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(channel string, fn func(Message)) (func(), error) {
	c := b.channel(channel, true)
	c.mu.Lock()
	id := c.next
	c.next++
	c.subs[id] = fn
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.subs, id)
		c.mu.Unlock()
	}, nil
}

// LastSeq implements Broker.
func (b *MemoryBroker) LastSeq(_ context.Context, channel string) (uint64, error) {
	c := b.channel(channel, false)
	if c == nil {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, nil
}

// AddPresence implements Broker.
func (b *MemoryBroker) AddPresence(channel string, delta int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.presence[channel] += delta
	if b.presence[channel] <= 0 {
		delete(b.presence, channel)
	}
}

// Presence implements Broker.
func (b *MemoryBroker) Presence(_ context.Context, channel string) (int, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.presence[channel], nil
}

// Channels implements Broker.
func (b *MemoryBroker) Channels(context.Context) (map[string]int, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make(map[string]int, len(b.presence))
	for k, v := range b.presence {
		out[k] = v
	}
	return out, nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
