package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisBrokerOptions configure a RedisBroker. Zero values mean the
// documented defaults.
type RedisBrokerOptions struct {
	// Prefix of every key and pub/sub channel. Default "sockjsd:hub".
	Prefix  string
	History HistoryOptions
	// NodeID names this node's presence counts. Default random.
	NodeID string
	// PresenceTTL is how long a node's presence counts outlive its last
	// heartbeat (sent every third of it): how soon a dead node's
	// subscribers stop being counted. Default 5s.
	PresenceTTL time.Duration
	// SubscribeTimeout bounds waiting for Redis to confirm a new channel
	// subscription. Default 5s.
	SubscribeTimeout time.Duration
	Logger           *slog.Logger
}

func (o RedisBrokerOptions) withDefaults() RedisBrokerOptions {
	if o.Prefix == "" {
		o.Prefix = "sockjsd:hub"
	}
	o.History = o.History.withDefaults()
	if o.NodeID == "" {
		o.NodeID = randomID()
	}
	if o.PresenceTTL <= 0 {
		o.PresenceTTL = 5 * time.Second
	}
	if o.SubscribeTimeout <= 0 {
		o.SubscribeTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RedisBroker is the Broker of a cluster of nodes sharing one Redis.
//
// What Redis holds, per channel C (keys hash-tagged on C, so a Redis
// Cluster keeps them in one slot):
//   - {P}:{C}:meta, a hash of the channel's seq and epoch;
//   - {P}:{C}:stream, a stream of its last History.Size messages (ID
//     "<seq>-0", fields d = data, t = publish time in ms);
//
// both expiring History.TTL after the channel's latest publish (or, while
// a node has subscribers, after that node's last keep-alive of them). Per
// node: {P}:presence:<node>, a hash of subscriber counts by channel, and
// its entry in the sorted set {P}:nodes, both expiring PresenceTTL after
// the node's last heartbeat.
//
// A publish runs one Lua script: the seq increment, the stream append and
// the PUBLISH are atomic, so that a node that misses a pub/sub message
// (a reconnect) finds it in the stream by seq.
type RedisBroker struct {
	rdb  redis.UniversalClient
	opts RedisBrokerOptions
	ps   *redis.PubSub
	// psMu orders SUBSCRIBE and UNSUBSCRIBE of a topic with the decisions
	// to send them, so that an unsubscribe cannot overtake a later
	// subscribe. Only those two paths take it (bounded by timeouts), never
	// with the hub's locks held. It is held across the command's write
	// only: go-redis's PubSub.Subscribe and Unsubscribe write and return
	// (the confirmation is read by the receive loop, and Subscribe waits
	// for it after releasing psMu), so a slow Redis does not serialize
	// new channels behind psMu. What it can be held across is a reconnect
	// of the pub/sub connection (a dial, bounded by the client's
	// DialTimeout, or a write stalled on a full socket buffer); but then
	// every subscribe waits for that one connection anyway, under
	// go-redis's own PubSub mutex, so a per-topic ordering would buy
	// nothing.
	psMu sync.Mutex

	mu    sync.RWMutex
	chans map[string]*redisChan // by pub/sub channel name
	next  uint64

	pmu      sync.Mutex
	local    map[string]int  // this node's presence counts
	dirty    map[string]bool // changed since the last heartbeat
	fullSync bool            // Redis may have lost our counts: write them all

	subUp  atomic.Bool // the pub/sub connection is live
	beatUp atomic.Bool // the last heartbeat reached Redis
	// beatErr is the last heartbeat's error, nil once one got through
	// (and before the first): for Ping.
	beatErr atomic.Pointer[error]
	// beaten: a heartbeat was tried, so that the first one failing is
	// logged (beatUp starts false: a broker whose heartbeats never get
	// through would otherwise say nothing). Heartbeat goroutine only.
	beaten bool
	closed atomic.Bool
	// life is cancelled by Close, before it waits for anything: every
	// Redis call of the receive loop and the heartbeat is made under it,
	// so that their retries, backoffs, dials and waits for a pooled
	// connection end at once. It does not end a command already waiting
	// for Redis's answer (see closeWait).
	life    context.Context
	cancel  context.CancelFunc
	stop    chan struct{}
	done    sync.WaitGroup
	closeMu sync.Once
}

// closeWait bounds each of Close's two waits: for the receive loop and
// the heartbeat to return, then for the presence cleanup; Close returns
// within twice that whatever Redis does. go-redis does not end a
// command's socket read when its context is cancelled (nor, unless the
// client sets ContextTimeoutEnabled, at its context's deadline): only
// the client's ReadTimeout does (go-redis's default: 5 s; never with
// read_timeout=-1), and a heartbeat's retries on fresh connections each
// wait for it again. Measured against a frozen Redis, a Close that waits
// for its loops until they return took 10 to 30 s with the defaults and
// never returned with read_timeout=-1. A loop waiting for a Redis that
// takes commands and never answers (frozen, or behind a stalled network
// path) cannot be made to return sooner, so Close stops waiting for it
// instead: the command ends at the read timeout or when the client is
// closed, and the loop then changes nothing anyone sees (deliver, beat).
const closeWait = time.Second

// redisChan is one channel this node subscribes to.
type redisChan struct {
	name      string
	subs      map[uint64]func(Message) // under RedisBroker.mu
	confirmed chan struct{}            // closed on Redis's first confirmation
	once      sync.Once

	// Delivery state, touched by the receive loop only.
	known bool
	epoch string
	last  uint64
}

// NewRedisBroker returns a broker on rdb and starts its receive loop and
// heartbeat. It does not fail when Redis is down: it keeps trying, and
// Up reports whether it is connected. On a Redis Cluster, rdb should
// follow failovers (redisclient.New, or redisclient.FollowFailover on a
// client of your own): else publishes to a channel whose master died fail
// until go-redis's next periodic slot-map reload, up to 60 s.
func NewRedisBroker(rdb redis.UniversalClient, opts RedisBrokerOptions) (*RedisBroker, error) {
	if rdb == nil {
		return nil, errors.New("hub: NewRedisBroker needs a Redis client")
	}
	b := &RedisBroker{
		rdb: rdb, opts: opts.withDefaults(), chans: map[string]*redisChan{},
		local: map[string]int{}, dirty: map[string]bool{}, fullSync: true, stop: make(chan struct{}),
	}
	b.life, b.cancel = context.WithCancel(context.Background())
	b.ps = rdb.Subscribe(context.Background())
	b.done.Add(2)
	go b.receive()
	go b.heartbeat()
	return b, nil
}

func (b *RedisBroker) metaKey(ch string) string   { return b.opts.Prefix + ":{" + ch + "}:meta" }
func (b *RedisBroker) streamKey(ch string) string { return b.opts.Prefix + ":{" + ch + "}:stream" }
func (b *RedisBroker) topic(ch string) string     { return b.opts.Prefix + ":{" + ch + "}" }
func (b *RedisBroker) nodesKey() string           { return b.opts.Prefix + ":nodes" }
func (b *RedisBroker) presenceKey(node string) string {
	return b.opts.Prefix + ":presence:" + node
}

// Up reports whether the broker is connected to Redis: its pub/sub
// connection is live and its last heartbeat got through. For readiness
// checks and the sockjs_broker_up gauge.
func (b *RedisBroker) Up() bool { return b.subUp.Load() && b.beatUp.Load() }

// Ping checks Redis with a round trip, the pub/sub connection and the
// last heartbeat: for /readyz. A Redis that answers PING may still refuse
// writes (out of memory under maxmemory, or a replica after a failover:
// READONLY); publishes fail then, and this node's presence counts expire.
func (b *RedisBroker) Ping(ctx context.Context) error {
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if !b.subUp.Load() {
		return errors.New("redis: pub/sub connection not up")
	}
	if err := b.beatErr.Load(); err != nil {
		return fmt.Errorf("redis: heartbeat failing: %w", *err)
	}
	return nil
}

// publishScript: KEYS meta, stream; ARGV data, size, ttl ms, topic, a new
// epoch (used when the channel starts from seq 1).
var publishScript = redis.NewScript(`
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local epoch
if seq == 1 then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('DEL', KEYS[2])
else
  epoch = redis.call('HGET', KEYS[1], 'epoch')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if tonumber(ARGV[2]) > 0 then
  local t = redis.call('TIME')
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 'd', ARGV[1], 't', t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[4], epoch .. ' ' .. seq .. ' ' .. ARGV[1])
return seq
`)

// Publish implements Broker.
func (b *RedisBroker) Publish(ctx context.Context, channel string, data json.RawMessage) (uint64, error) {
	if b.closed.Load() {
		return 0, ErrBrokerClosed
	}
	seq, err := publishScript.Run(ctx, b.rdb, []string{b.metaKey(channel), b.streamKey(channel)},
		string(data), b.opts.History.Size, b.opts.History.TTL.Milliseconds(), b.topic(channel), randomID()).Int64()
	if err != nil {
		return 0, fmt.Errorf("redis publish: %w", err)
	}
	return uint64(seq), nil
}

// Subscribe implements Broker: it returns once Redis confirmed the
// subscription, so that every later publish reaches fn.
func (b *RedisBroker) Subscribe(ctx context.Context, channel string, fn func(Message)) (func(), error) {
	if b.closed.Load() {
		return nil, ErrBrokerClosed
	}
	topic := b.topic(channel)
	b.psMu.Lock()
	b.mu.Lock()
	rc := b.chans[topic]
	fresh := rc == nil
	if fresh {
		rc = &redisChan{name: channel, subs: map[uint64]func(Message){}, confirmed: make(chan struct{})}
		b.chans[topic] = rc
	}
	b.next++
	id := b.next
	rc.subs[id] = fn
	b.mu.Unlock()
	var err error
	if fresh {
		// Close ends the call as the caller's context would: a
		// subscribe in progress at shutdown does not hold it up for
		// SubscribeTimeout.
		sctx, cancel := context.WithTimeout(ctx, b.opts.SubscribeTimeout)
		unhook := context.AfterFunc(b.life, cancel)
		err = b.ps.Subscribe(sctx, topic)
		unhook()
		cancel()
	}
	b.psMu.Unlock()
	cancel := func() { b.unsubscribe(topic, rc, id) }
	if err != nil {
		cancel()
		if b.closed.Load() {
			return nil, ErrBrokerClosed
		}
		return nil, fmt.Errorf("redis subscribe: %w", err)
	}
	t := time.NewTimer(b.opts.SubscribeTimeout)
	defer t.Stop()
	select {
	case <-rc.confirmed:
		return cancel, nil
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	case <-b.life.Done():
		cancel()
		return nil, ErrBrokerClosed
	case <-t.C:
		cancel()
		return nil, errors.New("redis subscribe: no confirmation from Redis")
	}
}

func (b *RedisBroker) unsubscribe(topic string, rc *redisChan, id uint64) {
	b.psMu.Lock()
	defer b.psMu.Unlock()
	b.mu.Lock()
	delete(rc.subs, id)
	last := len(rc.subs) == 0 && b.chans[topic] == rc
	if last {
		delete(b.chans, topic)
	}
	b.mu.Unlock()
	if last && !b.closed.Load() {
		// Best effort: a stale subscription only costs messages we drop.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = b.ps.Unsubscribe(ctx, topic)
	}
}

// Position implements Broker.
func (b *RedisBroker) Position(ctx context.Context, channel string) (Position, error) {
	v, err := b.rdb.HMGet(ctx, b.metaKey(channel), "seq", "epoch").Result()
	if err != nil {
		return Position{}, fmt.Errorf("redis position: %w", err)
	}
	return parseMeta(v), nil
}

func parseMeta(v []any) Position {
	var p Position
	if len(v) == 2 {
		if s, ok := v[0].(string); ok {
			p.Seq, _ = strconv.ParseUint(s, 10, 64)
		}
		if s, ok := v[1].(string); ok {
			p.Epoch = s
		}
	}
	return p
}

// History implements Broker: the meta, Redis's clock and the stream read
// in one transaction.
func (b *RedisBroker) History(ctx context.Context, channel string, since uint64, limit int) (History, error) {
	var meta *redis.SliceCmd
	var now *redis.TimeCmd
	var xs *redis.XMessageSliceCmd
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		meta = p.HMGet(ctx, b.metaKey(channel), "seq", "epoch")
		now = p.Time(ctx)
		xs = p.XRange(ctx, b.streamKey(channel), "-", "+")
		return nil
	})
	if err != nil {
		return History{}, fmt.Errorf("redis history: %w", err)
	}
	h := History{Position: parseMeta(meta.Val())}
	cutoff := now.Val().Add(-b.opts.History.TTL).UnixMilli()
	first := h.Seq + 1
	var msgs []Message
	for _, x := range xs.Val() {
		seq, t, data, ok := parseEntry(x)
		if !ok || t < cutoff || seq > h.Seq {
			continue
		}
		if first > h.Seq {
			first = seq
		}
		if seq > since && len(msgs) < limit {
			msgs = append(msgs, Message{Channel: channel, Epoch: h.Epoch, Seq: seq, Data: data})
		}
	}
	h.Complete = since <= h.Seq && since+1 >= first
	h.Messages = msgs
	return h, nil
}

func parseEntry(x redis.XMessage) (seq uint64, t int64, data json.RawMessage, ok bool) {
	id, _, _ := strings.Cut(x.ID, "-")
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return 0, 0, nil, false
	}
	d, _ := x.Values["d"].(string)
	ts, _ := x.Values["t"].(string)
	t, _ = strconv.ParseInt(ts, 10, 64)
	return seq, t, json.RawMessage(d), true
}

// Close implements Broker: it stops the loops and withdraws this node's
// presence. It returns within twice closeWait (2 s) whatever Redis does;
// a Redis call it stopped waiting for ends at the client's read timeout
// or when the client is closed (the caller closes it after Close).
func (b *RedisBroker) Close() error {
	b.closeMu.Do(func() {
		b.closed.Store(true)
		b.cancel()
		close(b.stop)
		loops := make(chan struct{})
		go func() {
			// PubSub.Close takes go-redis's pub/sub lock, which a
			// reconnect holds across its dial and handshake: waited for
			// here, with the loops, within closeWait.
			_ = b.ps.Close()
			b.done.Wait()
			close(loops)
		}()
		if !waitClosed(loops, closeWait) {
			b.opts.Logger.Warn("hub: redis broker closed before its loops returned (a Redis call unanswered, or a delivery waiting for room in a channel's fan-out queue)",
				"waited", closeWait)
		}
		// The presence cleanup is bounded the same way: its context
		// ends retries and dials, the wait ends a read Redis never
		// answers. Unanswered, or overtaken by a heartbeat Close did not
		// wait for, the node's entry and counts expire PresenceTTL after
		// they were last written, as a dead node's do.
		cleaned := make(chan struct{})
		go func() {
			defer close(cleaned)
			ctx, cancel := context.WithTimeout(context.Background(), closeWait)
			defer cancel()
			_, _ = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Del(ctx, b.presenceKey(b.opts.NodeID))
				p.ZRem(ctx, b.nodesKey(), b.opts.NodeID)
				return nil
			})
		}()
		waitClosed(cleaned, closeWait)
	})
	return nil
}

// waitClosed waits up to d for ch to be closed and reports whether it
// was. It is internal/bounded.Wait, which cluster and directory call: the
// hub uses only the module's public packages (TestApplicationsUseOnlyPublicAPI).
func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}
