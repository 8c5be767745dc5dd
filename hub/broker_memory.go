package hub

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"sync"
	"time"
)

// MemoryBrokerOptions configure the in-process broker. Zero values mean
// the documented defaults.
type MemoryBrokerOptions struct {
	History HistoryOptions
	// MaxHistoryBytes bounds the history of every channel together
	// (message bytes plus a fixed overhead per message and channel).
	// Over it, the least recently published channel's history is dropped
	// first. Default 64 MiB.
	MaxHistoryBytes int64
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// DefaultMaxHistoryBytes is MemoryBrokerOptions.MaxHistoryBytes's default.
const DefaultMaxHistoryBytes = 64 << 20

// Costs counted against MaxHistoryBytes beside the data itself: what a
// ring entry and a retained channel take in the Go heap.
const (
	memMessageOverhead = 128 // the entry, with append's slack
	memChannelOverhead = 512 // the state, its map entry, list element and epoch
)

// MemoryBroker is the in-process Broker: the embedded default. A channel's
// state lives while it has subscribers or history: a channel nobody
// subscribes to and whose history expired (or that keeps none) is
// forgotten, so that names cannot grow memory without bound.
//
// Locks: mu (channels, the retention list, bytes) is taken before a
// channel's mu, never after; presence has its own leaf lock because
// subscribers' delivery functions update it while a channel's mu is held.
type MemoryBroker struct {
	opts  MemoryBrokerOptions
	hist  HistoryOptions
	epoch uint64 // base of the epochs given to new channel states

	mu       sync.Mutex
	channels map[string]*memChannel
	retained *list.List // channels with history, least recently published first
	bytes    int64      // history bytes held, as MaxHistoryBytes counts them
	nextID   uint64
	sweep    *time.Timer
	closed   bool

	pmu      sync.Mutex
	presence map[string]int
}

type memChannel struct {
	name  string
	epoch string
	refs  int           // publishers and readers at work on it (under broker mu)
	elem  *list.Element // in retained when it holds history (under broker mu)
	last  time.Time     // latest publish (under broker mu)

	mu    sync.Mutex // orders seq assignment and delivery
	seq   uint64
	ring  []memEntry // the newest messages, ring[head] the oldest
	head  int
	n     int
	bytes int64 // this channel's share of the broker's bytes
	subs  map[uint64]func(Message)
}

type memEntry struct {
	seq  uint64
	at   time.Time
	data json.RawMessage
}

// NewMemoryBroker returns an empty in-memory broker.
func NewMemoryBroker(opts MemoryBrokerOptions) *MemoryBroker {
	opts.History = opts.History.withDefaults()
	if opts.MaxHistoryBytes <= 0 {
		opts.MaxHistoryBytes = DefaultMaxHistoryBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &MemoryBroker{
		opts: opts, hist: opts.History, epoch: binary.LittleEndian.Uint64(b[:]) >> 8,
		channels: map[string]*memChannel{}, retained: list.New(), presence: map[string]int{},
	}
}

// pin returns the channel's state, created when missing, held so that it
// is not forgotten until unpin.
func (b *MemoryBroker) pin(name string, create bool) (*memChannel, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrBrokerClosed
	}
	c := b.channels[name]
	if c == nil {
		if !create {
			return nil, nil
		}
		b.nextID++
		c = &memChannel{name: name, epoch: strconv.FormatUint(b.epoch+b.nextID, 36), subs: map[uint64]func(Message){}}
		b.channels[name] = c
	}
	c.refs++
	return c, nil
}

// unpin releases a pin, accounts added history bytes, and forgets the
// channel if nothing keeps it.
func (b *MemoryBroker) unpin(c *memChannel, added int64, published bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c.refs--
	b.bytes += added
	if published && b.hist.Size > 0 {
		c.last = b.opts.Now()
		if c.elem == nil {
			c.elem = b.retained.PushBack(c)
		} else {
			b.retained.MoveToBack(c.elem)
		}
		b.armSweep()
	}
	// Over the byte budget: drop whole histories, oldest publish first.
	for e := b.retained.Front(); b.bytes > b.opts.MaxHistoryBytes && e != nil; {
		next := e.Next()
		if v := e.Value.(*memChannel); v != c {
			b.dropHistory(v)
		}
		e = next
	}
	b.maybeForget(c)
}

// dropHistory empties v's ring (under b.mu).
func (b *MemoryBroker) dropHistory(v *memChannel) {
	v.mu.Lock()
	b.bytes -= v.bytes
	v.bytes, v.ring, v.head, v.n = 0, nil, 0, 0
	v.mu.Unlock()
	if v.elem != nil {
		b.retained.Remove(v.elem)
		v.elem = nil
	}
	b.maybeForget(v)
}

// maybeForget deletes c when no one uses it and it keeps no history
// (under b.mu).
func (b *MemoryBroker) maybeForget(c *memChannel) {
	if c.refs > 0 || c.elem != nil {
		return
	}
	c.mu.Lock()
	idle := len(c.subs) == 0 && c.n == 0
	c.mu.Unlock()
	if idle && b.channels[c.name] == c {
		delete(b.channels, c.name)
	}
}

// armSweep schedules the next expiry of the oldest history (under b.mu).
func (b *MemoryBroker) armSweep() {
	if b.sweep != nil || b.closed || b.retained.Len() == 0 {
		return
	}
	oldest := b.retained.Front().Value.(*memChannel)
	d := oldest.last.Add(b.hist.TTL).Sub(b.opts.Now())
	b.sweep = time.AfterFunc(max(d, 10*time.Millisecond), b.expire)
}

// expire forgets the history of every channel whose latest message is
// older than the TTL.
func (b *MemoryBroker) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweep = nil
	b.expireLocked()
	b.armSweep()
}

func (b *MemoryBroker) expireLocked() {
	cutoff := b.opts.Now().Add(-b.hist.TTL)
	for e := b.retained.Front(); e != nil; {
		v := e.Value.(*memChannel)
		if v.last.After(cutoff) {
			break // the list is in publish order
		}
		e = e.Next()
		b.dropHistory(v)
	}
}

// Publish implements Broker. Delivery runs under the channel's lock so
// that every subscriber sees the channel's messages in sequence order;
// the hub's delivery function only queues the message for the channel's
// fan-out goroutine (it waits only while that queue is over its bound,
// hub/fanout.go).
func (b *MemoryBroker) Publish(_ context.Context, channel string, data json.RawMessage) (uint64, error) {
	c, err := b.pin(channel, true)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.seq++
	m := Message{Channel: channel, Epoch: c.epoch, Seq: c.seq, Data: data}
	added := c.push(b.hist.Size, memEntry{c.seq, b.opts.Now(), data})
	for _, fn := range c.subs {
		fn(m)
	}
	seq := c.seq
	c.mu.Unlock()
	b.unpin(c, added, true)
	return seq, nil
}

// push appends e to the ring, returning the change in bytes (under c.mu).
// The ring grows as messages come, so that a channel published to once
// costs one entry, not Size.
func (c *memChannel) push(size int, e memEntry) int64 {
	if size <= 0 {
		return 0
	}
	var delta int64
	if c.n == 0 {
		delta += memChannelOverhead
	}
	cost := func(e memEntry) int64 { return int64(len(e.data)) + memMessageOverhead }
	if len(c.ring) < size {
		c.ring = append(c.ring, e)
		c.n++
	} else {
		delta -= cost(c.ring[c.head])
		c.ring[c.head] = e
		c.head = (c.head + 1) % size
	}
	delta += cost(e)
	c.bytes += delta
	return delta
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(_ context.Context, channel string, fn func(Message)) (func(), error) {
	c, err := b.pin(channel, true)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.mu.Unlock()
	c.mu.Lock()
	c.subs[id] = fn
	c.mu.Unlock()
	b.unpin(c, 0, false)
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			c.mu.Lock()
			delete(c.subs, id)
			c.mu.Unlock()
			b.maybeForget(c)
		})
	}, nil
}

// Position implements Broker.
func (b *MemoryBroker) Position(_ context.Context, channel string) (Position, error) {
	c, err := b.pin(channel, false)
	if c == nil || err != nil {
		return Position{}, err
	}
	c.mu.Lock()
	p := Position{c.epoch, c.seq}
	c.mu.Unlock()
	b.unpin(c, 0, false)
	return p, nil
}

// History implements Broker.
func (b *MemoryBroker) History(_ context.Context, channel string, since uint64, limit int) (History, error) {
	c, err := b.pin(channel, false)
	if err != nil {
		return History{}, err
	}
	if c == nil {
		return History{Complete: since == 0}, nil
	}
	defer b.unpin(c, 0, false)
	cutoff := b.opts.Now().Add(-b.hist.TTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	h := History{Position: Position{c.epoch, c.seq}}
	first := c.seq + 1 // the oldest seq still held
	for i := 0; i < c.n; i++ {
		if e := c.ring[(c.head+i)%len(c.ring)]; e.at.After(cutoff) {
			first = e.seq
			break
		}
	}
	h.Complete = since <= c.seq && since+1 >= first
	for i := 0; i < c.n && len(h.Messages) < limit; i++ {
		if e := c.ring[(c.head+i)%len(c.ring)]; e.seq > since && e.seq >= first {
			h.Messages = append(h.Messages, Message{Channel: channel, Epoch: c.epoch, Seq: e.seq, Data: e.data})
		}
	}
	return h, nil
}

// AddPresence implements Broker.
func (b *MemoryBroker) AddPresence(channel string, delta int) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	n := b.presence[channel] + delta
	if n <= 0 {
		delete(b.presence, channel)
		return
	}
	b.presence[channel] = n
}

// Presence implements Broker.
func (b *MemoryBroker) Presence(_ context.Context, channel string) (int, error) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	return b.presence[channel], nil
}

// Channels implements Broker.
func (b *MemoryBroker) Channels(context.Context) (map[string]int, error) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	out := make(map[string]int, len(b.presence))
	for k, v := range b.presence {
		out[k] = v
	}
	return out, nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.sweep != nil {
		b.sweep.Stop()
		b.sweep = nil
	}
	return nil
}

// stats reports the channel states and history bytes held, for tests.
func (b *MemoryBroker) stats() (channels int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.channels), b.bytes
}
