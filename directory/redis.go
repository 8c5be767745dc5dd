package directory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/bounded"
	"github.com/sockjsd/sockjsd/webhook"
)

// RedisOptions configure a Redis directory. Zero values mean the
// documented defaults.
type RedisOptions struct {
	// Prefix starts every key, as webhook.RedisQueueKey's prefix: the
	// directory's keys are "<Prefix>{webhook}:dir:…", in the queues'
	// slot. Default "sockjsd:".
	Prefix string
	// Node names this node in entries (where the proxy routes a send).
	// Default the host name.
	Node string
	// TTL is how long this node's sessions outlive its last refresh
	// (every TTL/3): how soon the sessions of a node that died without a
	// word are closed as lost, give or take ReapInterval. Default 15s.
	TTL time.Duration
	// OfflineDelay is how long after a user's last session closed, on
	// any node, user.offline is sent unless a session of theirs is added
	// meanwhile. Default 5s; negative: at once.
	OfflineDelay time.Duration
	// Events enqueues the lifecycle events on the webhook queues in Redis
	// (webhook.RedisQueueKey), in the scripts that change the state.
	// Default false: no webhooks (lookups work all the same).
	Events bool
	// MaxQueue bounds each partition's queue: an event finding its
	// partition this long is dropped and counted (Dropped), logged once
	// per full episode. Default 100,000 (64 partitions: 6.4M events).
	MaxQueue int
	// MaxByUser bounds ByUser's answer. Default 1000.
	MaxByUser int
	// ReapInterval is how often this node looks for sessions of dead
	// nodes and due offlines. Default 1s.
	ReapInterval time.Duration
	// ReapBatch bounds the sessions (and, separately, the offlines) one
	// reaping script handles, so that a dead node with many sessions does
	// not block Redis for long; a reaping round runs at most 50 scripts.
	// Default 100.
	ReapBatch int
	// Timeout bounds each Redis call of the background loops. Default
	// TTL/3.
	Timeout time.Duration
	// Logger reports Redis outages and a full queue, each once per
	// episode. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of RedisOptions.
const (
	DefaultPrefix       = "sockjsd:"
	DefaultTTL          = 15 * time.Second
	DefaultMaxQueue     = 100_000
	DefaultReapInterval = time.Second
	DefaultReapBatch    = 100
	maxReapCalls        = 50
	restoreBatch        = 500
	// maxUndone bounds the failed Adds kept for cleanup (failed Removes
	// of live sessions are always kept: they are bounded by the
	// sessions).
	maxUndone = 100_000
)

func (o RedisOptions) withDefaults() RedisOptions {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	o.OfflineDelay = offlineDelay(o.OfflineDelay)
	if o.MaxQueue <= 0 {
		o.MaxQueue = DefaultMaxQueue
	}
	o.MaxByUser = maxByUser(o.MaxByUser)
	if o.ReapInterval <= 0 {
		o.ReapInterval = DefaultReapInterval
	}
	if o.ReapBatch <= 0 {
		o.ReapBatch = DefaultReapBatch
	}
	if o.Timeout <= 0 {
		o.Timeout = o.TTL / 3
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Redis is the Directory of many nodes sharing one Redis. See the package
// documentation for its keys and what happens when a node dies or Redis
// restarts.
type Redis struct {
	rdb   redis.UniversalClient
	opts  RedisOptions
	inst  string // this instance: liveness is per process, not per Node name
	base  string // key base
	qbase string // queue key without its partition
	genK  string
	full  fullLog
	down  outageLog

	// syncMu: Add and Remove hold it shared; a resync (restoring records
	// Redis lost) and the retry of failed removes hold it alone, so that
	// they see this node's sessions as Redis does, with no change in
	// flight.
	syncMu sync.RWMutex
	mu     sync.Mutex
	gen    string             // the generation this node's records are in ("": none yet)
	live   map[string]Entry   // this node's sessions
	undone map[string]undoing // sessions whose removal did not reach Redis
	check  bool               // a refresh failed: compare with Redis at the next success
	closed bool

	// life is cancelled by Close, before it waits for anything: every
	// Redis call of the loop is made under it (with Timeout on top), so
	// that no command is sent once Close began and retries and waits for
	// a pooled connection end at once. It does not end a command already
	// waiting for Redis's answer (see closeWait).
	life   context.Context
	cancel context.CancelFunc
	// closing: Close holds it while it marks the directory closed; what
	// the loop does with Redis's answers (this node's state, logs,
	// Dropped) is done holding it shared, never across a Redis call, and
	// only while not closed (whileOpen): once Close returned, nothing the
	// loop does is visible.
	closing sync.RWMutex

	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// closeWait bounds Close's wait for the refresh and reaping loop: Close
// returns within it whatever Redis does. go-redis does not end a
// command's socket read when its context is cancelled (nor, unless the
// client sets ContextTimeoutEnabled, at its context's deadline): only the
// client's ReadTimeout does (never with read_timeout=-1), and retries on
// fresh connections wait for it again. A loop waiting for a Redis that
// takes commands and never answers (frozen, or behind a stalled network
// path) cannot be made to return sooner, so Close stops waiting for it:
// the command ends at the read timeout or when the client is closed, and
// the loop then returns without acting on the answer.
const closeWait = time.Second

// undoing is a removal to retry: a Remove that failed, or the cleanup of
// an Add that failed (added false: no record of it was ever confirmed).
type undoing struct {
	e      Entry
	code   int
	reason string
	added  bool
}

// NewRedis returns the directory on rdb and starts its refresh and reaping
// loop. It does not fail when Redis is down: calls fail until it is back.
// On a Redis Cluster, rdb should follow failovers (redisclient.New, or
// redisclient.FollowFailover on a client of your own): else calls fail
// after the directory's master died until go-redis's next periodic
// slot-map reload, up to 60 s.
func NewRedis(rdb redis.UniversalClient, o RedisOptions) (*Redis, error) {
	if rdb == nil {
		return nil, errors.New("directory: NewRedis needs a Redis client")
	}
	o = o.withDefaults()
	d := &Redis{
		rdb: rdb, opts: o, inst: randomHex(8), base: o.Prefix + "{webhook}:dir:",
		qbase: strings.TrimSuffix(webhook.RedisQueueKey(o.Prefix, 0), "0"),
		full:  fullLog{log: o.Logger}, down: outageLog{log: o.Logger},
		live: map[string]Entry{}, undone: map[string]undoing{}, stop: make(chan struct{}),
	}
	if webhook.RedisQueueKey(o.Prefix, 7) != d.qbase+"7" {
		return nil, errors.New("directory: webhook.RedisQueueKey no longer ends in the partition number")
	}
	d.genK = d.base + "gen"
	d.life, d.cancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(d.life, o.Timeout)
	_ = d.resync(ctx, false) // best effort: the first call does it otherwise
	cancel()
	d.done.Add(1)
	go d.loop()
	return d, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Dropped is how many events were not enqueued because their partition
// held MaxQueue events.
func (d *Redis) Dropped() int64 { return d.full.dropped.Load() }

// Instance is this process's liveness id (one per NewRedis).
func (d *Redis) Instance() string { return d.inst }

// args are the ARGV every writing script starts with (luaCommon), with
// room for events ids.
func (d *Redis) args(gen string, events int, extra ...any) []any {
	ids := ""
	if d.opts.Events && events > 0 {
		var sb strings.Builder
		for range events {
			sb.WriteString(eventID())
		}
		ids = sb.String()
	}
	ev := "0"
	if d.opts.Events {
		ev = "1"
	}
	a := []any{d.base, gen, d.qbase, webhook.RedisWakeChannel(d.opts.Prefix), webhook.Partitions,
		ev, d.opts.MaxQueue, ids, d.opts.OfflineDelay.Milliseconds(), d.opts.TTL.Milliseconds(), d.inst}
	return append(a, extra...)
}

// The modes of addScript (its last argument).
const (
	addLoud  = "0" // Add: events
	addQuiet = "1" // restore after Redis lost its data: no events
	addAdopt = "2" // Adopt: another instance's record becomes this one's
)

func (d *Redis) addArgs(gen string, e Entry, quiet bool) []any {
	mode := addLoud
	if quiet {
		mode = addQuiet
	}
	return d.addArgsMode(gen, e, mode)
}

func (d *Redis) addArgsMode(gen string, e Entry, mode string) []any {
	var opened int64
	if !e.Opened.IsZero() {
		opened = e.Opened.UnixMilli()
	}
	return d.args(gen, addEvents, e.ID, e.Service, e.User, e.Transport, e.Node, e.Remote, opened, mode)
}

// The most events one Add (opened, online) and one Remove (closed, and
// offline without a delay) emit: the event ids their scripts get.
const (
	addEvents    = 2
	removeEvents = 2
)

// errGen: Redis's generation is not the one this node's records are in
// (Redis lost its data); the call changed nothing.
var errGen = errors.New("directory: generation changed")

// reply reads a writing script's answer: the status, then the events
// pushed and dropped.
func (d *Redis) reply(v any, where string) ([]any, error) {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return nil, fmt.Errorf("directory: unexpected answer %v", v)
	}
	switch a[0] {
	case "gen":
		return nil, errGen
	case "exists":
		return nil, ErrExists
	case "ok":
	default:
		return nil, fmt.Errorf("directory: unexpected answer %v", v)
	}
	// Writing scripts answer {"ok", pushed, dropped, …}; the refresh
	// answers {"ok", reaped, sessions held} and pushes nothing.
	if len(a) >= 3 && where != "refresh" {
		pushed, _ := a[1].(int64)
		dropped, _ := a[2].(int64)
		d.full.drop(int(dropped), where)
		if pushed > 0 && dropped == 0 {
			d.full.ok()
		}
	}
	return a, nil
}

// run runs a writing script; after errGen it resyncs and runs it once
// more. The caller holds syncMu shared; it is released around the
// resync.
func (d *Redis) run(ctx context.Context, s *redis.Script, args func(gen string) []any, where string) ([]any, error) {
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		gen := d.gen
		d.mu.Unlock()
		v, err := d.eval(ctx, s, args(gen)...).Result()
		if err != nil {
			return nil, err
		}
		a, err := d.reply(v, where)
		if !errors.Is(err, errGen) || attempt > 0 {
			return a, err
		}
		d.syncMu.RUnlock()
		err = d.resync(ctx, false)
		d.syncMu.RLock()
		if err != nil {
			return nil, err
		}
	}
}

// Add implements Directory. Entry.Node defaults to RedisOptions.Node.
// While Redis is down it returns the error: the session is not in the
// directory (and a record the failed call may have left is removed with
// CodeAddFailed at the next refresh, unless Add is called again).
func (d *Redis) Add(ctx context.Context, e Entry) error {
	return d.add(ctx, e, addLoud)
}

// Adopt records a session that moved to this node from another (a
// hand-off): the record the other node holds becomes this node's, with
// e's node, transport and remote, and no event is enqueued (the session
// did not open or close, and its user did not come or go). When there is
// no record (the other node's was closed as lost meanwhile, or never
// made) it is Add, events included.
func (d *Redis) Adopt(ctx context.Context, e Entry) error {
	return d.add(ctx, e, addAdopt)
}

// Forget drops id from the sessions this node refreshes and puts back,
// without touching its record: the session moved to another node, which
// adopts the record (Adopt). A later Remove of id here does nothing.
func (d *Redis) Forget(id string) {
	d.mu.Lock()
	delete(d.live, id)
	d.mu.Unlock()
}

func (d *Redis) add(ctx context.Context, e Entry, mode string) error {
	if e.ID == "" {
		return ErrNoID
	}
	if e.Node == "" {
		e.Node = d.opts.Node
	}
	d.syncMu.RLock()
	defer d.syncMu.RUnlock()
	if d.isClosed() {
		return ErrClosed
	}
	a, err := d.run(ctx, addScript, func(gen string) []any { return d.addArgsMode(gen, e, mode) }, "add")
	if errors.Is(err, ErrExists) {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		// Past maxUndone (a long outage, sessions refused and retried
		// under new ids) a failed Add is not cleaned up: during an
		// outage it most likely never reached Redis.
		if _, ok := d.live[e.ID]; !ok && len(d.undone) < maxUndone {
			d.undone[e.ID] = undoing{e: e, code: CodeAddFailed, reason: ReasonAddFailed}
		}
		return fmt.Errorf("directory: add %s: %w", e.ID, err)
	}
	if len(a) > 3 {
		if ms, ok := a[3].(int64); ok {
			e.Opened = time.UnixMilli(ms)
		}
	}
	d.live[e.ID] = e
	delete(d.undone, e.ID)
	return nil
}

// Remove implements Directory; call it on the node that added id. While
// Redis is down it returns the error, and the removal is retried at every
// refresh until it gets through (emitting session.closed with this code
// and reason then).
func (d *Redis) Remove(ctx context.Context, id string, code int, reason string) error {
	d.syncMu.RLock()
	defer d.syncMu.RUnlock()
	if d.isClosed() {
		return ErrClosed
	}
	d.mu.Lock()
	e, ok := d.live[id]
	u, undo := d.undone[id]
	if !ok && !undo {
		d.mu.Unlock()
		return nil
	}
	if ok {
		u = undoing{e: e, added: true}
	}
	u.code, u.reason = code, reason
	delete(d.live, id)
	d.undone[id] = u
	d.mu.Unlock()
	if err := d.remove(ctx, id, u); err != nil {
		return fmt.Errorf("directory: remove %s: %w", id, err)
	}
	return nil
}

// remove runs the removal u of id and forgets it once Redis has it.
func (d *Redis) remove(ctx context.Context, id string, u undoing) error {
	_, err := d.run(ctx, removeScript, func(gen string) []any { return d.args(gen, removeEvents, id, u.code, u.reason) }, "remove")
	if err != nil {
		return err
	}
	d.forget(id, u)
	return nil
}

// forget drops the removal u of id once Redis has it, unless a later one
// (another Remove of the id) took its place.
func (d *Redis) forget(id string, u undoing) {
	d.mu.Lock()
	if cur, ok := d.undone[id]; ok && cur == u {
		delete(d.undone, id)
	}
	d.mu.Unlock()
}

// Lookup implements Directory: a session whose node missed its deadline
// is not found, even before a reaper closed it.
func (d *Redis) Lookup(ctx context.Context, id string) (Entry, bool, error) {
	es, err := d.read(ctx, "id", id, 1)
	if err != nil || len(es) == 0 {
		return Entry{}, false, err
	}
	return es[0], true, nil
}

// ByUser implements Directory: up to MaxByUser live sessions, from one
// script (one SSCAN walk of the user's set).
func (d *Redis) ByUser(ctx context.Context, user string) ([]Entry, error) {
	return d.read(ctx, "user", user, d.opts.MaxByUser)
}

func (d *Redis) read(ctx context.Context, by, key string, max int) ([]Entry, error) {
	if d.isClosed() {
		return nil, ErrClosed
	}
	v, err := d.eval(ctx, readScript, d.base, by, key, max).Slice()
	if err != nil {
		return nil, fmt.Errorf("directory: %s %s: %w", by, key, err)
	}
	out := make([]Entry, 0, len(v))
	for _, x := range v {
		pair, ok := x.([]any)
		if !ok || len(pair) != 2 {
			continue
		}
		id, _ := pair[0].(string)
		fields, _ := pair[1].([]any)
		e := Entry{ID: id}
		for i := 0; i+1 < len(fields); i += 2 {
			k, _ := fields[i].(string)
			s, _ := fields[i+1].(string)
			switch k {
			case "service":
				e.Service = s
			case "user":
				e.User = s
			case "transport":
				e.Transport = s
			case "node":
				e.Node = s
			case "remote":
				e.Remote = s
			case "opened":
				if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
					e.Opened = time.UnixMilli(ms)
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func (d *Redis) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Close implements Directory: it stops refreshing and reaping. Sessions
// not removed stay in Redis until the other nodes' reapers close them as
// lost, TTL later (as when the process dies): to drain gracefully, Remove
// every session before Close.
//
// Close returns within closeWait (1 s) whatever Redis does. When the loop
// is still waiting for Redis's answer then (a Redis that takes commands
// and never answers, with a client without ContextTimeoutEnabled), Close
// logs it once and returns: the command ends at the client's read timeout
// or when the client is closed (the caller closes it after Close), and
// the loop returns without acting on the answer (no log, no change of
// this node's state, no further command). The command itself may still
// run in Redis once it answers again: a refresh moves this node's
// deadline (its sessions are then closed as lost TTL after it, as a dead
// node's), a reap or a retried removal does what any node's would.
func (d *Redis) Close() error {
	d.once.Do(func() {
		d.closing.Lock()
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.closing.Unlock()
		d.cancel()
		close(d.stop)
		loop := make(chan struct{})
		go func() {
			d.done.Wait()
			close(loop)
		}()
		if !bounded.Wait(loop, closeWait) {
			d.opts.Logger.Warn("directory: redis directory closed before its loop returned (a Redis call unanswered)",
				"waited", closeWait)
		}
	})
	return nil
}

// whileOpen runs f unless Close began, holding closing shared so that
// Close cannot begin meanwhile, and reports whether it ran. The loop does
// what it does with Redis's answers in f; f must not call Redis.
func (d *Redis) whileOpen(f func()) bool {
	d.closing.RLock()
	defer d.closing.RUnlock()
	if d.isClosed() {
		return false
	}
	f()
	return true
}

// outageLog logs a Redis outage once, and its end.
type outageLog struct {
	log *slog.Logger
	mu  sync.Mutex
	on  bool
}

func (o *outageLog) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.on {
		o.on = true
		o.log.Warn("directory: redis unreachable, retrying", "err", err)
	}
}

func (o *outageLog) ok() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.on {
		o.on = false
		o.log.Info("directory: redis reachable again")
	}
}
