package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisQueue keeps the events in Redis, shared by every node:
//
//	<prefix>{webhook}:q:<p>       list: partition p's events, JSON, oldest first (RedisQueueKey)
//	<prefix>{webhook}:lease:<p>   string: the token of the node delivering p, PX LeaseTTL (RedisLeaseKey)
//	<prefix>{webhook}:wake        pub/sub: a partition's number, after each push (RedisWakeChannel)
//
// Anyone may push (RPUSH, then PUBLISH the partition): this node's
// Enqueue, or another component's Lua script in the same transaction as
// its own state change. Delivery does not care who pushed.
//
// Each partition is delivered by at most one node at a time, the one
// holding its lease (SET NX PX, renewed every LeaseTTL/3, released when
// the partition is empty or at Shutdown). The holder reads the head
// (LINDEX 0), posts it until a 2xx, and only then removes it, with a
// script that pops the head only if it is still that event: a node that
// dies mid-POST leaves the event at the head, and whoever takes the lease
// after LeaseTTL posts it again (at least once; the id deduplicates). A
// node stops starting POSTs once its lease may have expired (a renewal
// lost or failed for most of LeaseTTL) and cancels the one in flight, so
// that two nodes overlap on a partition for at most one POST.
//
// Nodes take the lease of a non-empty partition when told (the wake
// channel) and, because pub/sub loses messages across reconnections,
// when their poll (Options.Poll) finds one that nobody holds. The
// partitions spread over the nodes by delay, not by count: a node waits
// a few milliseconds per lease it already holds (plus jitter) before it
// bids for another, so an idle node wins a woken partition over a busy
// one. No node needs to know how many nodes there are, and a lone node
// still takes every partition, only a little later. Options.MaxLeases
// adds a hard cap for operators who want one.
type RedisQueue struct {
	n      *Notifier
	rdb    redis.UniversalClient
	prefix string
	token  string // this node's lease value
	full   atomic.Bool
	length atomic.Int64 // last poll's count
}

// RedisLeaseKey is the key whose value names the node delivering
// partition p.
func RedisLeaseKey(prefix string, p int) string {
	return prefix + "{webhook}:lease:" + strconv.Itoa(p)
}

func newRedisQueue(n *Notifier) *RedisQueue {
	return &RedisQueue{n: n, rdb: n.opts.Redis, prefix: n.opts.Prefix, token: NewID()}
}

// enqueueScript: KEYS list; ARGV event, max length, wake channel,
// partition. Checks the bound and pushes in one step, so that concurrent
// Enqueues cannot overshoot it.
var enqueueScript = redis.NewScript(`
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return n
`)

// popScript: KEYS list; ARGV the head delivered. Removes it only if it
// is still the head: another node that took the partition over may have
// delivered and removed it already.
var popScript = redis.NewScript(`
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[1])
  return 1
end
return 0
`)

// renewScript: KEYS lease; ARGV token, ttl ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript: KEYS lease, list; ARGV token, only if empty ("1").
// "Only if empty" makes "the list is empty, so let go" atomic: an event
// pushed just before is seen (and delivered by this node), one pushed
// just after wakes a node that finds the lease free.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 1 end
if ARGV[2] == '1' and redis.call('LLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// Enqueue implements Queue.
func (q *RedisQueue) Enqueue(ctx context.Context, e Event) error {
	raw, err := fill(&e)
	if err != nil {
		return err
	}
	p := Partition(e.OrderKey())
	n, err := enqueueScript.Run(ctx, q.rdb, []string{RedisQueueKey(q.prefix, p)},
		raw, q.n.opts.MaxQueueLen, RedisWakeChannel(q.prefix), p).Int64()
	if err != nil {
		return err
	}
	if n < 0 {
		q.n.obs.QueueFull()
		if !q.full.Swap(true) {
			q.n.log.Error("webhook: Redis queue partition full, refusing events until it drains",
				"partition", p, "max_queue_len", q.n.opts.MaxQueueLen)
		}
		return ErrQueueFull
	}
	q.full.Store(false)
	return nil
}

// Len is the number of events in all partitions, as of the last poll.
func (q *RedisQueue) Len() int { return int(q.length.Load()) }

func (q *RedisQueue) left() int { return 0 }

// lease is this node's hold on one partition, and its worker.
type lease struct {
	p      int
	until  atomic.Int64 // unix ns: start no POST after it
	cancel context.CancelFunc
}

func (l *lease) valid() bool { return time.Now().UnixNano() < l.until.Load() }

// extend records a successful SET or renewal made at t: the lease holds
// in Redis until t+LeaseTTL; this node stops a fifth of it earlier, a
// margin for the round trip and for clocks that run at slightly
// different rates.
func (q *RedisQueue) extend(l *lease, t time.Time) {
	ttl := q.n.opts.LeaseTTL
	l.until.Store(t.Add(ttl - ttl/5).UnixNano())
}

// spreadStep is the wait per lease held before bidding for another: long
// enough to let a node one round trip away answer first, short enough
// that a lone node holding every partition adds only ~Partitions*2ms.
const spreadStep = 2 * time.Millisecond

// releaseTimeout bounds releasing a lease at the end of a worker, and all
// the releases left once Shutdown's context ended: they run even then, so
// that other nodes need not wait for LeaseTTL, but not for long if Redis
// does not answer.
const releaseTimeout = time.Second

func (q *RedisQueue) run(n *Notifier) {
	ps := q.rdb.Subscribe(n.hard, RedisWakeChannel(q.prefix))
	defer ps.Close()
	wakes := ps.Channel()

	held := map[int]*lease{}
	exited := make(chan *lease)
	bids := make(chan int, Partitions) // delayed bids; pending bounds them to one per partition
	var pending [Partitions]bool
	var coolUntil [Partitions]time.Time // after a lost bid, ignore wakes until the next poll
	renewEvery := n.opts.LeaseTTL / 3
	// Half the shorter period, so that neither is late by a whole tick.
	tick := time.NewTicker(min(renewEvery, n.opts.Poll) / 2)
	defer tick.Stop()
	var lastRenew, lastPoll time.Time
	stopCh := n.stop
	stopping := false

	start := func(l *lease) {
		var ctx context.Context
		ctx, l.cancel = context.WithCancel(n.hard)
		held[l.p] = l
		go func() {
			q.work(ctx, n, l)
			exited <- l
		}()
	}
	bid := func(p int) {
		if stopping || held[p] != nil || len(held) >= n.opts.MaxLeases {
			return
		}
		t := time.Now()
		ok, err := q.rdb.SetNX(n.hard, RedisLeaseKey(q.prefix, p), q.token, n.opts.LeaseTTL).Result()
		if err != nil {
			if n.hard.Err() == nil {
				n.log.Warn("webhook: Redis lease", "partition", p, "err", err)
			}
			return
		}
		if !ok {
			coolUntil[p] = t.Add(n.opts.Poll)
			return
		}
		l := &lease{p: p}
		q.extend(l, t)
		start(l)
	}
	consider := func(p int, poll bool) {
		if stopping || held[p] != nil || pending[p] || (!poll && time.Now().Before(coolUntil[p])) {
			return
		}
		if len(held) == 0 {
			bid(p)
			return
		}
		pending[p] = true
		d := time.Duration(len(held))*spreadStep + rand.N(spreadStep)
		time.AfterFunc(d, func() { bids <- p })
	}
	poll := func() {
		pipe := q.rdb.Pipeline()
		lens := make([]*redis.IntCmd, Partitions)
		for p := range lens {
			lens[p] = pipe.LLen(n.hard, RedisQueueKey(q.prefix, p))
		}
		if _, err := pipe.Exec(n.hard); err != nil {
			if n.hard.Err() == nil {
				n.log.Warn("webhook: Redis poll", "err", err)
			}
			return
		}
		total := 0
		for _, p := range rand.Perm(Partitions) {
			l := int(lens[p].Val())
			total += l
			if l > 0 {
				consider(p, true)
			}
		}
		q.length.Store(int64(total))
		n.obs.QueueLength(total)
	}
	renew := func() {
		pipe := q.rdb.Pipeline()
		t := time.Now()
		cmds := make(map[*lease]*redis.Cmd, len(held))
		for _, l := range held {
			cmds[l] = renewScript.Eval(n.hard, pipe, []string{RedisLeaseKey(q.prefix, l.p)}, q.token, n.opts.LeaseTTL.Milliseconds())
		}
		_, _ = pipe.Exec(n.hard)
		for l, c := range cmds {
			switch v, err := c.Int64(); {
			case err == nil && v == 1:
				q.extend(l, t)
			case err == nil:
				n.log.Warn("webhook: Redis lease lost", "partition", l.p)
				l.cancel()
			case !l.valid():
				n.log.Warn("webhook: Redis lease not renewed, stopping its partition", "partition", l.p, "err", err)
				l.cancel()
			}
		}
	}

	poll()
	lastPoll = time.Now()
	for !stopping || len(held) > 0 {
		select {
		case <-stopCh:
			stopping, stopCh = true, nil
		case l := <-exited:
			delete(held, l.p)
			l.cancel()
			if n.killed.Load() {
				continue
			}
			// The worker ended: the partition was empty, the lease was
			// lost, or the node stops. Let the lease go, unless events
			// arrived since the worker saw the list empty: then deliver
			// them on the same lease (nobody else can take it).
			if !q.release(l, !stopping) && !stopping && l.valid() {
				start(l)
			}
		case m, ok := <-wakes:
			if !ok {
				wakes = nil
				continue
			}
			if p, err := strconv.Atoi(m.Payload); err == nil && p >= 0 && p < Partitions {
				consider(p, false)
			}
		case p := <-bids:
			pending[p] = false
			bid(p)
		case t := <-tick.C:
			// Renew while stopping too: a POST in flight may take up to
			// Timeout, longer than LeaseTTL, and another node posting
			// the same event meanwhile would be a needless repeat.
			if t.Sub(lastRenew) >= renewEvery-renewEvery/10 && len(held) > 0 {
				lastRenew = t
				renew()
			}
			if !stopping && t.Sub(lastPoll) >= n.opts.Poll-n.opts.Poll/10 {
				lastPoll = t
				poll()
			}
		}
	}
}

// release lets l's partition go; ifEmpty keeps it when events arrived
// meanwhile (they are then found by the next wake or poll).
// It returns false when it kept the lease.
func (q *RedisQueue) release(l *lease, ifEmpty bool) bool {
	ctx, cancel := context.WithTimeout(q.n.release, releaseTimeout)
	defer cancel()
	flag := "0"
	if ifEmpty {
		flag = "1"
	}
	v, err := releaseScript.Run(ctx, q.rdb, []string{RedisLeaseKey(q.prefix, l.p), RedisQueueKey(q.prefix, l.p)}, q.token, flag).Int64()
	// On an error the lease expires by itself after LeaseTTL.
	return err != nil || v == 1
}

// work delivers partition l.p while the lease holds, until the partition
// is empty or the node stops.
func (q *RedisQueue) work(ctx context.Context, n *Notifier, l *lease) {
	key := RedisQueueKey(q.prefix, l.p)
	pause := func() bool { // after a Redis error; false: stop
		t := time.NewTimer(100*time.Millisecond + rand.N(100*time.Millisecond))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		case <-n.stop:
			return false
		}
	}
	for !n.stopping() && ctx.Err() == nil && l.valid() {
		raw, err := q.rdb.LIndex(ctx, key, 0).Result()
		if errors.Is(err, redis.Nil) {
			return // empty: the manager releases the lease if it still is
		}
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("webhook: Redis read", "partition", l.p, "err", err)
			}
			if !pause() {
				return
			}
			continue
		}
		ev, ok := parseQueued(raw)
		if !ok {
			n.log.Error("webhook: dropping a queued entry that is not an event", "partition", l.p, "bytes", len(raw))
			n.obs.Dropped("other", DropMalformed)
		} else if !n.deliver(ctx, ev) {
			return
		}
		// Delivered (or given up): remove it, retrying Redis errors; if
		// this node stops first, the head is posted again later. The pop
		// outlives ctx (a lease lost, Shutdown's deadline) by up to
		// releaseTimeout: removing an event that got its 2xx is right
		// whoever holds the lease, and spares the receiver a repeat.
		for {
			pctx, cancel := context.WithTimeout(n.release, releaseTimeout)
			err := popScript.Run(pctx, q.rdb, []string{key}, raw).Err()
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() == nil {
				n.log.Warn("webhook: Redis pop", "partition", l.p, "err", err)
			}
			if !pause() {
				return
			}
		}
	}
}

// parseQueued reads an entry of a Redis list. The body posted is the entry
// itself, byte for byte, whoever pushed it; an entry without an id gets
// one derived from its bytes, the same on every node and every attempt, so
// that the receiver can still deduplicate.
func parseQueued(raw string) (queued, bool) {
	var e Event
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return queued{}, false
	}
	body := []byte(raw)
	if e.ID == "" {
		sum := sha256.Sum256(body)
		e.ID = hex.EncodeToString(sum[:16])
		b, err := json.Marshal(e)
		if err != nil {
			return queued{}, false
		}
		body = b
	}
	return queued{raw: body, id: e.ID, typ: typeLabel(e.Type)}, true
}
