package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/backend"
)

// Defaults of Options.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultRetryFor      = time.Hour
	DefaultRetryMin      = 500 * time.Millisecond
	DefaultRetryMax      = 30 * time.Second
	DefaultMaxQueueBytes = 64 << 20
	DefaultMaxQueueLen   = 10_000
	DefaultLeaseTTL      = 5 * time.Second
	DefaultPoll          = time.Second
	DefaultPrefix        = "sockjsd:"
)

// EventIDHeader carries the event's id on every POST, so that a receiver
// can drop a repeat before it parses the body.
const EventIDHeader = "X-Sockjsd-Event-Id"

// Options configure a Notifier. Zero values mean the documented defaults.
type Options struct {
	// URL receives every event: one POST of one Event as JSON to the URL
	// itself. Required.
	URL string
	// Secret signs every POST (X-Sockjsd-Signature, like the proxy's
	// calls; internal/sign). Empty: unsigned, which only tests should do.
	Secret []byte
	// Timeout bounds one POST. Default 10s.
	Timeout time.Duration
	// RetryFor is how long one event is retried, counted from its first
	// POST on this node; after it, the event is dropped with one log
	// line and counted (Observer.Dropped "expired"), and the next one of
	// its partition goes. A node taking a Redis partition over starts
	// the count again for the head event. Default 1h.
	RetryFor time.Duration
	// RetryMin and RetryMax bound the backoff between two POSTs of one
	// event: RetryMin doubling at each failure up to RetryMax, each wait
	// jittered down to half of it so that the partitions of a receiver
	// that comes back do not all hit it at once. Defaults 500ms and 30s.
	RetryMin, RetryMax time.Duration
	// MaxInFlight bounds the POSTs in flight at once. Default Partitions
	// (one per partition, which is the most that can be).
	MaxInFlight int
	// Transport carries the POSTs. Default: a pooled transport of its own.
	Transport http.RoundTripper

	// Redis, when set, keeps the queue in Redis (RedisQueue): events
	// survive a node's end and any node delivers them. Nil: in this
	// process's memory (MemoryQueue). A Redis Cluster client should
	// follow failovers (redisclient.New or redisclient.FollowFailover).
	Redis redis.UniversalClient
	// Prefix of the Redis keys (RedisQueueKey, RedisWakeChannel).
	// Default "sockjsd:".
	Prefix string
	// MaxQueueBytes bounds the memory queue: the sum of the queued
	// events' JSON sizes. Default 64 MiB.
	MaxQueueBytes int64
	// MaxQueueLen bounds each Redis partition's list, checked atomically
	// by Enqueue (others pushing to the list directly bound it their
	// own way). Default 10,000, so at most 640,000 events in Redis.
	MaxQueueLen int
	// LeaseTTL is how long a node's hold on a Redis partition lasts
	// without renewal (it renews every LeaseTTL/3): a node that dies
	// without releasing its leases delays its partitions this long.
	// Default 5s.
	LeaseTTL time.Duration
	// Poll is how often a node looks for non-empty Redis partitions
	// nobody delivers, besides the wake-up messages (pub/sub can lose
	// them). Default 1s.
	Poll time.Duration
	// MaxLeases caps the Redis partitions one node delivers at once.
	// Default Partitions (no cap; see RedisQueue for how they spread).
	MaxLeases int

	// Logger: default slog.Default(). No secret or URL is logged.
	Logger *slog.Logger
	// Observer is told deliveries, drops and queue sizes (NewMetrics).
	Observer Observer
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryFor <= 0 {
		o.RetryFor = DefaultRetryFor
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = Partitions
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if o.MaxQueueLen <= 0 {
		o.MaxQueueLen = DefaultMaxQueueLen
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.MaxLeases <= 0 || o.MaxLeases > Partitions {
		o.MaxLeases = Partitions
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// Notifier queues events and delivers them to the webhook URL. It is the
// Queue the rest of sockjsd enqueues through.
type Notifier struct {
	opts   Options
	log    *slog.Logger
	obs    Observer
	client *backend.Client
	store  store

	// stop is closed by Shutdown: take no new event, start no new POST.
	stop     chan struct{}
	stopOnce sync.Once
	// hard ends when Shutdown's context does: abandon POSTs in flight.
	hard       context.Context
	hardCancel context.CancelFunc
	// release bounds releasing Redis leases: it ends releaseTimeout
	// after hard, so that a Redis that does not answer cannot hold
	// Shutdown for a timeout per lease.
	release       context.Context
	releaseCancel context.CancelFunc
	// killed: end without releasing Redis leases (tests: a node killed
	// with -9).
	killed atomic.Bool
	done   chan struct{}
}

var _ Queue = (*Notifier)(nil)

// store is a Notifier's queue: it keeps events and runs the delivery
// workers, calling Notifier.deliver for each partition's head in turn.
type store interface {
	Queue
	// run delivers until n.stop, then returns once its workers have.
	run(n *Notifier)
	// Len is the events waiting (see MemoryQueue.Len, RedisQueue.Len).
	Len() int
	// left is what stays queued in this process after run returned
	// (memory: lost; Redis: 0, the events stay in Redis).
	left() int
}

// New starts a Notifier and its delivery workers. Shutdown stops them.
func New(opts Options) (*Notifier, error) {
	opts.defaults()
	header := http.Header{"User-Agent": {"sockjsd-webhook"}}
	tr := opts.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = opts.MaxInFlight
		t.MaxIdleConnsPerHost = opts.MaxInFlight
		t.MaxConnsPerHost = opts.MaxInFlight
		tr = t
	}
	c, err := backend.New(backend.Options{
		URL: opts.URL, Secret: opts.Secret, Timeout: opts.Timeout,
		MaxInFlight: opts.MaxInFlight, Header: header,
		Transport: idTransport{tr},
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	n := &Notifier{
		opts: opts, log: opts.Logger.With("component", "webhook"), obs: opts.Observer,
		client: c, stop: make(chan struct{}), done: make(chan struct{}),
	}
	n.hard, n.hardCancel = context.WithCancel(context.Background())
	n.release, n.releaseCancel = context.WithCancel(context.Background())
	context.AfterFunc(n.hard, func() { time.AfterFunc(releaseTimeout, n.releaseCancel) })
	if opts.Redis != nil {
		n.store = newRedisQueue(n)
	} else {
		n.store = newMemoryQueue(n)
	}
	go func() {
		defer close(n.done)
		n.store.run(n)
	}()
	return n, nil
}

// Enqueue queues e for delivery, filling its ID (NewID) and Time (now)
// when empty. It returns ErrQueueFull when the queue holds its limit, or
// Redis's error.
func (n *Notifier) Enqueue(ctx context.Context, e Event) error {
	return n.store.Enqueue(ctx, e)
}

// Len is the number of events waiting: in memory, exactly; in Redis, in
// all partitions as of this node's last poll.
func (n *Notifier) Len() int { return n.store.Len() }

// Queue is the queue n delivers from: a *MemoryQueue or a *RedisQueue.
func (n *Notifier) Queue() Queue { return n.store }

// Shutdown stops the workers: no new POST starts, and the POSTs in flight
// may end until ctx does, when they are abandoned (at least once: an
// abandoned POST is posted again later). It then releases the Redis
// leases so that other nodes take the partitions over at once; queued
// events stay in Redis. In memory, the events left are lost: their
// count is logged. Shutdown returns ctx's error if it ended first.
func (n *Notifier) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() { close(n.stop) })
	var err error
	select {
	case <-n.done:
	case <-ctx.Done():
		err = ctx.Err()
		n.hardCancel()
		// Everything the workers wait on ends with hard, and releasing
		// the leases within releaseTimeout of it.
		<-n.done
	}
	n.hardCancel()
	n.releaseCancel()
	if left := n.store.left(); left > 0 {
		n.log.Warn("webhook: events not delivered at shutdown, lost", "count", left)
	}
	n.client.Close()
	return err
}

// kill ends the workers at once, leaving the Redis leases to expire: what
// a node killed with -9 does, for tests.
func (n *Notifier) kill() {
	n.killed.Store(true)
	n.stopOnce.Do(func() { close(n.stop) })
	n.hardCancel()
	<-n.done
	n.releaseCancel()
	n.client.Close()
}

// stopping reports whether Shutdown was called.
func (n *Notifier) stopping() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

// fill gives e an id and a time, and encodes it.
func fill(e *Event) ([]byte, error) {
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	return json.Marshal(e)
}

// queued is one event waiting: its JSON as posted, and what the worker
// needs of it.
type queued struct {
	raw []byte
	id  string
	typ string // typeLabel
}

// deliver posts ev until a 2xx, RetryFor, or Shutdown. It returns true
// when ev is done with (delivered, or dropped and counted), false when
// the worker must stop and leave ev queued (ctx ended or n.stop closed).
func (n *Notifier) deliver(ctx context.Context, ev queued) bool {
	first := time.Now()
	wait := n.opts.RetryMin
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		err := n.client.CallRaw(context.WithValue(ctx, eventIDKey{}, ev.id), "", ev.raw, nil)
		out := backend.OutcomeOf(err)
		// A 2xx whose body is not JSON, or is too long, was still
		// received: the body of a webhook's answer means nothing.
		if out == backend.BadAnswer || out == backend.TooLarge {
			out, err = backend.OK, nil
		}
		if err != nil && ctx.Err() != nil {
			// Abandoned: the event stays queued, posted again later.
			n.obs.Delivered(ev.typ, string(backend.Canceled), time.Since(t0))
			return false
		}
		n.obs.Delivered(ev.typ, string(out), time.Since(t0))
		if err == nil {
			// Even if ctx ended meanwhile: the receiver has it.
			return true
		}
		if time.Since(first) >= n.opts.RetryFor {
			n.log.Error("webhook: event dropped: not delivered within RetryFor",
				"id", ev.id, "type", ev.typ, "attempts", attempt, "retry_for", n.opts.RetryFor, "err", err)
			n.obs.Dropped(ev.typ, DropExpired)
			return true
		}
		if attempt == 1 {
			n.log.Warn("webhook: delivery failed, retrying", "id", ev.id, "type", ev.typ, "err", err)
		}
		n.obs.Retried(ev.typ)
		// Equal jitter: between half the backoff and all of it.
		d := wait/2 + rand.N(wait/2+1)
		if rest := n.opts.RetryFor - time.Since(first); d > rest {
			d = max(rest, 0)
		}
		wait = min(wait*2, n.opts.RetryMax)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-n.stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// eventIDKey carries the event id from deliver to idTransport through
// the request's context: backend.Client has no per-call header, and the
// id is the one header that differs between two POSTs.
type eventIDKey struct{}

type idTransport struct{ next http.RoundTripper }

func (t idTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	id, ok := r.Context().Value(eventIDKey{}).(string)
	if !ok {
		return t.next.RoundTrip(r)
	}
	// A RoundTripper must not change the request it was given.
	r2 := r.Clone(r.Context())
	r2.Header.Set(EventIDHeader, id)
	return t.next.RoundTrip(r2)
}

// CloseIdleConnections lets backend.Client.Close reach the transport.
func (t idTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// errStopped: Enqueue after Shutdown.
var errStopped = errors.New("webhook: shut down")
