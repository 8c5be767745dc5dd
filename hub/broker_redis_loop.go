package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// receive reads the pub/sub connection until Close. go-redis reconnects
// and resubscribes on the next read after an error; each resubscription
// is confirmed to us, and the channel then catches up from its stream
// what it missed meanwhile.
//
// Known limit: a catch-up (and a first subscription's Position) is a
// Redis round trip made on this loop, so every channel's delivery waits
// for it: after a reconnect with N channels, about N round trips
// (measured: 2,000 channels killed off pub/sub and published to caught up
// in 0.2 s on loopback, ~0.1 ms each; at a 1 ms network round trip that
// is 2 s with no delivery on any channel). While
// the loop waits, Redis buffers this connection's pub/sub output, and
// past client-output-buffer-limit (pubsub, 32mb hard by default) it drops
// the connection: another reconnect, whose losses the catch-up recovers
// from the stream or announces (recovered:false), never silently. Moving
// catch-ups off the loop (per channel, live messages buffered up to a
// byte bound, a bounded worker pool so N channels do not flood the
// client pool) would keep other channels flowing.
func (b *RedisBroker) receive() {
	defer b.done.Done()
	ctx := b.life // a reconnect's dial ends at Close
	backoff := 50 * time.Millisecond
	idle := b.opts.PresenceTTL / 3
	for !b.closed.Load() {
		msg, err := b.ps.ReceiveTimeout(ctx, idle)
		if b.closed.Load() {
			return // what came, or failed, after Close is not handled
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet: check the connection is still there.
				if perr := b.ps.Ping(ctx); perr != nil {
					b.down(perr)
				}
				continue
			}
			b.down(err)
			// Wait before reconnecting (a retry loop's pause, not a
			// synchronisation), unless closing.
			select {
			case <-b.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if !b.subUp.Swap(true) {
			b.opts.Logger.Info("hub: redis pub/sub connected")
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.confirmed(m.Channel)
			}
		case *redis.Message:
			b.onMessage(m.Channel, m.Payload)
		}
	}
}

func (b *RedisBroker) down(err error) {
	if b.subUp.Swap(false) {
		b.opts.Logger.Warn("hub: redis pub/sub connection lost, reconnecting", "err", err)
	}
}

// chanFor returns the channel state of a topic (nil when no longer
// subscribed).
func (b *RedisBroker) chanFor(topic string) *redisChan {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.chans[topic]
}

// confirmed handles Redis's confirmation of a (re)subscription: a first
// one learns where the channel stands; a later one, after a reconnect,
// delivers from the stream what was published meanwhile.
func (b *RedisBroker) confirmed(topic string) {
	rc := b.chanFor(topic)
	if rc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.life, 5*time.Second)
	defer cancel()
	if !rc.known {
		p, err := b.Position(ctx, rc.name)
		if err != nil {
			if b.life.Err() == nil { // not Close cutting it short
				b.opts.Logger.Warn("hub: redis position after subscribe", "channel", rc.name, "err", err)
			}
			return // the subscriber's Subscribe times out and fails
		}
		rc.known, rc.epoch, rc.last = true, p.Epoch, p.Seq
		rc.once.Do(func() { close(rc.confirmed) })
		return
	}
	b.catchUp(ctx, topic, rc, 0)
}

// catchUp delivers from the stream the messages after rc.last, up to seq
// upTo exclusive when not 0 (a gap before the live message upTo, of
// rc.epoch). It asks for what follows rc.last, not for the whole
// history: once the channel published more than history holds, seq 1 is
// gone and history since 0 is never complete, yet what it still holds
// after rc.last is exactly what was missed. When history no longer
// reaches back to rc.last, what it holds is delivered all the same: the
// seq jumps, and the hub tells its subscribers (recovered:false).
//
// After a reconnect (upTo 0) the channel may have started a new epoch
// meanwhile: then all the stream holds of it is new. A gap before a live
// message whose epoch is no longer the channel's is left to the hub to
// announce: that epoch's history is gone.
func (b *RedisBroker) catchUp(ctx context.Context, topic string, rc *redisChan, upTo uint64) {
	h, err := b.History(ctx, rc.name, rc.last, b.opts.History.Size)
	if err == nil && h.Epoch != rc.epoch && upTo == 0 {
		since := rc.last
		rc.epoch, rc.last = h.Epoch, 0
		if since != 0 {
			h, err = b.History(ctx, rc.name, 0, b.opts.History.Size)
		}
	}
	if err != nil {
		if b.life.Err() == nil { // not Close cutting it short
			b.opts.Logger.Warn("hub: redis catch-up", "channel", rc.name, "err", err)
		}
		return
	}
	if h.Epoch != rc.epoch {
		return
	}
	for _, m := range h.Messages {
		if m.Seq > rc.last && (upTo == 0 || m.Seq < upTo) {
			b.deliver(topic, rc, m)
		}
	}
}

// onMessage delivers one pub/sub message "<epoch> <seq> <data>", first
// filling any gap from the stream.
func (b *RedisBroker) onMessage(topic, payload string) {
	rc := b.chanFor(topic)
	if rc == nil || !rc.known {
		return // not (yet) subscribed: Position at confirmation covers it
	}
	epoch, rest, _ := strings.Cut(payload, " ")
	seqS, data, ok := strings.Cut(rest, " ")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if !ok || err != nil {
		b.opts.Logger.Warn("hub: malformed message on redis pub/sub", "topic", topic)
		return
	}
	if epoch != rc.epoch {
		rc.epoch, rc.last = epoch, 0
	}
	if seq <= rc.last {
		return // already delivered by a catch-up
	}
	if seq > rc.last+1 {
		ctx, cancel := context.WithTimeout(b.life, 5*time.Second)
		b.catchUp(ctx, topic, rc, seq) // keeps rc.epoch: it fills before seq only
		cancel()
	}
	b.deliver(topic, rc, Message{Channel: rc.name, Epoch: epoch, Seq: seq, Data: json.RawMessage(data)})
}

func (b *RedisBroker) deliver(topic string, rc *redisChan, m Message) {
	rc.last = m.Seq
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed.Load() {
		// Handled after Close (a catch-up Close stopped waiting for,
		// answered later): Close may have returned, so nothing more is
		// delivered.
		return
	}
	for _, fn := range rc.subs {
		fn(m)
	}
}

// AddPresence implements Broker: counted here, written to Redis by the
// heartbeat.
func (b *RedisBroker) AddPresence(channel string, delta int) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	n := b.local[channel] + delta
	if n <= 0 {
		delete(b.local, channel)
	} else {
		b.local[channel] = n
	}
	b.dirty[channel] = true
}

// heartbeat writes this node's presence counts and keeps its entry (and
// its channels' sequence keys) alive.
func (b *RedisBroker) heartbeat() {
	defer b.done.Done()
	every := b.opts.PresenceTTL / 3
	keepAlive := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		b.beat()
		if time.Since(keepAlive) > b.opts.History.TTL/3 {
			b.keepChannels()
			keepAlive = time.Now()
		}
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
	}
}

func (b *RedisBroker) beat() {
	b.pmu.Lock()
	full := b.fullSync
	set, del := map[string]any{}, []string{}
	if full {
		for ch, n := range b.local {
			set[ch] = n
		}
	} else {
		for ch := range b.dirty {
			if n, ok := b.local[ch]; ok {
				set[ch] = n
			} else {
				del = append(del, ch)
			}
		}
	}
	clear(b.dirty)
	b.fullSync = false
	b.pmu.Unlock()

	ctx, cancel := context.WithTimeout(b.life, b.opts.PresenceTTL/3)
	defer cancel()
	key, ttl := b.presenceKey(b.opts.NodeID), b.opts.PresenceTTL
	var alive *redis.BoolCmd
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		alive = p.PExpire(ctx, key, ttl) // false: Redis lost our counts
		if full {
			p.Del(ctx, key)
		}
		if len(del) > 0 {
			p.HDel(ctx, key, del...)
		}
		if len(set) > 0 {
			p.HSet(ctx, key, set)
		}
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if b.life.Err() != nil {
		// Close began, maybe while this waited: its cleanup withdraws
		// the node, which this must not put back in the nodes' set,
		// and the outcome is not the connection's state to log.
		return
	}
	if err == nil {
		// Not in the transaction: the node's entry lives in another
		// slot than its counts on Redis Cluster (a MULTI there must
		// stay in one slot). Counts written without the entry (this
		// call failing) are not read: Presence reads live nodes only.
		err = beatScript.Run(ctx, b.rdb, []string{b.nodesKey()}, b.opts.NodeID, ttl.Milliseconds()).Err()
	}
	if err != nil || (!full && !alive.Val()) {
		b.pmu.Lock()
		b.fullSync = true // write everything again next time
		b.pmu.Unlock()
	}
	first := !b.beaten
	b.beaten = true
	if err != nil {
		b.beatErr.Store(&err)
	} else {
		b.beatErr.Store(nil)
	}
	if up := err == nil; b.beatUp.Swap(up) != up || (first && !up) {
		if up {
			b.opts.Logger.Info("hub: redis heartbeat ok")
		} else {
			b.opts.Logger.Warn("hub: redis heartbeat failed", "err", err)
		}
	}
}

// redisNowMs is Redis's clock in ms, inside a script. Heartbeats are
// scored, and read, by the one clock every node shares: a node whose own
// clock is off would otherwise be counted dead (behind) or, ahead, count
// every other node dead and remove their entries.
const redisNowMs = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// beatScript: KEYS nodes; ARGV node, ttl ms. This node's entry expires
// ttl after now, by Redis's clock; entries expired by it go.
var beatScript = redis.NewScript(redisNowMs + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
`)

// liveNodesScript: KEYS nodes. The nodes whose entry has not expired by
// Redis's clock.
var liveNodesScript = redis.NewScript(redisNowMs + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`)

// keepChannels renews the sequence keys of the channels this node has
// subscribers on, so that a quiet channel someone reads keeps its epoch.
func (b *RedisBroker) keepChannels() {
	b.mu.RLock()
	names := make([]string, 0, len(b.chans))
	for _, rc := range b.chans {
		names = append(names, rc.name)
	}
	b.mu.RUnlock()
	ctx, cancel := context.WithTimeout(b.life, 5*time.Second)
	defer cancel()
	_, _ = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ch := range names {
			p.PExpire(ctx, b.metaKey(ch), b.opts.History.TTL)
		}
		return nil
	})
}

// liveNodes are the nodes whose heartbeat is recent, this one excluded.
func (b *RedisBroker) liveNodes(ctx context.Context) ([]string, error) {
	nodes, err := liveNodesScript.Run(ctx, b.rdb, []string{b.nodesKey()}).StringSlice()
	if err != nil {
		return nil, err
	}
	out := nodes[:0]
	for _, n := range nodes {
		if n != b.opts.NodeID {
			out = append(out, n)
		}
	}
	return out, nil
}

// Presence implements Broker: this node's count, exact, plus the other
// live nodes' as of their last heartbeat.
func (b *RedisBroker) Presence(ctx context.Context, channel string) (int, error) {
	nodes, err := b.liveNodes(ctx)
	if err != nil {
		return 0, err
	}
	cmds := make([]*redis.StringCmd, len(nodes))
	if len(nodes) > 0 {
		if _, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range nodes {
				cmds[i] = p.HGet(ctx, b.presenceKey(n), channel)
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
	}
	b.pmu.Lock()
	total := b.local[channel]
	b.pmu.Unlock()
	for _, c := range cmds {
		n, _ := c.Int()
		total += n
	}
	return total, nil
}

// Channels implements Broker.
func (b *RedisBroker) Channels(ctx context.Context) (map[string]int, error) {
	nodes, err := b.liveNodes(ctx)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(nodes))
	if len(nodes) > 0 {
		if _, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range nodes {
				cmds[i] = p.HGetAll(ctx, b.presenceKey(n))
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	out := map[string]int{}
	b.pmu.Lock()
	for ch, n := range b.local {
		out[ch] = n
	}
	b.pmu.Unlock()
	for _, c := range cmds {
		for ch, v := range c.Val() {
			if n, _ := strconv.Atoi(v); n > 0 {
				out[ch] += n
			}
		}
	}
	return out, nil
}
