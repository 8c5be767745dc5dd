package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// Observer receives hub events for metrics.
type Observer interface {
	// ObservePingRTT is the round trip of a ping on a session's transport.
	ObservePingRTT(t session.Transport, d time.Duration)
	// SubscriberDropped counts a subscriber disconnected because its
	// send queue overflowed.
	SubscriberDropped(t session.Transport)
}

// RefusalObserver, when the Observer implements it too, counts requests
// the hub refused because of a limit or a right: reason is one of the
// Refused* constants (a bounded set, fit for a metric label).
type RefusalObserver interface {
	Refused(reason string)
}

// Refusal reasons.
const (
	RefusedSessionLimit = "session_limit" // MaxSubscriptions
	RefusedAddressLimit = "address_limit" // MaxSubscriptionsPerAddress
	RefusedChannelLimit = "channel_limit" // MaxChannels
	RefusedForbidden    = "forbidden"     // no right to subscribe or publish
)

// ResetObserver, when the Observer implements it too, counts the live
// subscribers told recovered:false because their channel's sequence did
// not continue: reason is ResetEpoch or ResetGap (fit for a metric label).
type ResetObserver interface {
	SubscriberReset(t session.Transport, reason string)
}

// FanOutObserver, when the Observer implements it too, counts publishes
// that waited for room in their channel's fan-out queue
// (Options.MaxFanOutQueueBytes).
type FanOutObserver interface {
	FanOutWaited()
}

// Reset reasons.
const (
	ResetEpoch = "epoch" // the channel started a new epoch
	ResetGap   = "gap"   // messages of the epoch were lost (history no longer held them)
)

type nopObserver struct{}

func (nopObserver) ObservePingRTT(session.Transport, time.Duration) {}
func (nopObserver) SubscriberDropped(session.Transport)             {}

// Options configure a Hub. Zero values mean the documented defaults.
type Options struct {
	Rules Rules
	// Broker carries messages. Default a MemoryBroker with History.
	Broker Broker
	// HistorySize is the most messages a subscribe with since replays
	// (the broker's own history settings bound what it keeps). Default
	// 100; negative: none.
	HistorySize int
	// PingInterval is how often each session gets {"op":"ping"}, to
	// measure its round trip (Observer.ObservePingRTT) within the hub's
	// own protocol: clients may answer or ignore it. Default 25s.
	PingInterval time.Duration
	// MaxSubscriptions per session. Default 100.
	MaxSubscriptions int
	// MaxSubscriptionsPerAddress bounds the subscriptions of every session
	// from one client IP address together. Default 1,000.
	MaxSubscriptionsPerAddress int
	// MaxDataBytes bounds the data of one publish. Default 64 KiB.
	MaxDataBytes int
	// MaxChannels bounds the channels with local subscribers. Default 100,000.
	MaxChannels int
	// MaxFanOutQueueBytes bounds the publishes of one channel waiting for
	// its fan-out goroutine (fanout.go), data plus 128 bytes each: past
	// it the broker's delivery waits for room, which holds up the
	// channel's publishers (memory broker) or the node's pub/sub reading
	// (Redis), instead of the queue growing. Default
	// DefaultMaxFanOutQueueBytes.
	MaxFanOutQueueBytes int
	// Hooks, when set, let a backend decide subscribes and browser
	// publishes and answer rpc ops (NewHTTPHooks). Default none: the
	// rules alone decide, and rpc is an unknown op.
	Hooks    Hooks
	Observer Observer
	Logger   *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxSubscriptions           = 100
	DefaultMaxSubscriptionsPerAddress = 1000
	DefaultMaxChannels                = 100_000
)

func (o Options) withDefaults() Options {
	o.Rules = o.Rules.withDefaults()
	if o.HistorySize == 0 {
		o.HistorySize = DefaultHistorySize
	}
	if o.Broker == nil {
		o.Broker = NewMemoryBroker(MemoryBrokerOptions{History: HistoryOptions{Size: o.HistorySize}})
	}
	o.HistorySize = max(o.HistorySize, 0) // negative: none
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if o.MaxSubscriptionsPerAddress <= 0 {
		o.MaxSubscriptionsPerAddress = DefaultMaxSubscriptionsPerAddress
	}
	if o.MaxDataBytes <= 0 {
		o.MaxDataBytes = 64 << 10
	}
	if o.MaxChannels <= 0 {
		o.MaxChannels = DefaultMaxChannels
	}
	if o.MaxFanOutQueueBytes <= 0 {
		o.MaxFanOutQueueBytes = DefaultMaxFanOutQueueBytes
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Hub routes channel messages between sessions and the broker.
type Hub struct {
	opts    Options
	refused func(string)
	reset   func(session.Transport, string)
	// fanWaited is FanOutObserver's, or nothing.
	fanWaited func()
	// parallelMin is parallelMin when the hub was made (subscribe.go).
	parallelMin int

	mu       sync.Mutex
	channels map[string]*local
	perAddr  map[string]int // subscriptions by client address
	members  map[*session.Session]*Member
	// served are the clients of the sessions Serve (or Resume) runs, for
	// Export.
	served map[*session.Session]*client

	// subscribing counts the broker subscriptions being made
	// (subscribeShared), each bounded by the broker's own timeout.
	subscribing sync.WaitGroup
}

// New returns a Hub.
func New(opts Options) *Hub {
	h := &Hub{opts: opts.withDefaults(), channels: map[string]*local{}, perAddr: map[string]int{}, members: map[*session.Session]*Member{}, served: map[*session.Session]*client{}, parallelMin: parallelMin}
	h.refused = func(string) {}
	if r, ok := h.opts.Observer.(RefusalObserver); ok {
		h.refused = r.Refused
	}
	h.fanWaited = func() {}
	if r, ok := h.opts.Observer.(FanOutObserver); ok {
		h.fanWaited = r.FanOutWaited
	}
	h.reset = func(session.Transport, string) {}
	if r, ok := h.opts.Observer.(ResetObserver); ok {
		h.reset = r.SubscriberReset
	}
	return h
}

// Broker is the hub's broker.
func (h *Hub) Broker() Broker { return h.opts.Broker }

// Rules are the hub's channel rules.
func (h *Hub) Rules() Rules { return h.opts.Rules }

type client struct {
	s    *session.Session
	addr string
	// id is the session's opaque id in hook calls: session.Session.ID,
	// crypto-random and never the URL's session id.
	id string

	// mu is held while a message is handled and while the session's
	// subscriptions are released at its end, which may overlap.
	mu    sync.Mutex
	subs  map[string]*sub
	ended bool // the subscriptions were released: handle nothing more
	// token is the session's hub token (the URL's, or the last refresh's)
	// and user its sub claim (under mu).
	token string
	user  string
	// expiry closes the session at its token's exp (under mu; nil until
	// a valid token came); exp is that time in Unix nanoseconds, read by
	// the timer without mu, since mu may be held for a hook's round trip.
	expiry *time.Timer
	exp    atomic.Int64

	// ping is the ping timer of a served session (nil for a Member's).
	ping *time.Timer

	pingMu   sync.Mutex
	pingID   int64
	pingSent time.Time
	lastRTT  time.Duration // of the last answered ping, sent with the next one
}

// addrOf is the client IP a session counts against: the connection's, not
// a header's, so that a client cannot pick it.
func addrOf(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

func (h *Hub) newClient(s *session.Session, req session.Request) *client {
	return &client{s: s, addr: addrOf(req.RemoteAddr), id: s.ID(), subs: map[string]*sub{}}
}

// releaseAtEnd releases c's subscriptions and timers when its session
// ends.
func (h *Hub) releaseAtEnd(c *client, ping *time.Timer) {
	context.AfterFunc(c.s.Context(), func() {
		if ping != nil {
			ping.Stop()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ended = true
		if c.expiry != nil {
			c.expiry.Stop()
		}
		for ch := range c.subs {
			h.leave(c, ch)
		}
	})
}

// Serve is the SockJS session handler: mount it with transport.New. It
// returns at once: the session's messages are handled on the goroutine
// that received them (session.OnMessage), so that an idle hub session
// holds no goroutine of its own, and its subscriptions are released when
// the session ends. With a TokenSecret, a session whose token (the URL's,
// or the last refresh's) was valid is closed with CodeTokenExpired at the
// token's exp, by a timer, unless a refresh op gave it a later one.
func (h *Hub) Serve(s *session.Session) {
	// Request builds the request's headers and query afresh on each
	// call (a session keeps them compact): read it once.
	req := s.Request()
	c := h.newClient(s, req)
	c.mu.Lock()
	h.setToken(c, req.Query.Get("token"))
	c.mu.Unlock()
	h.serveClient(c)
}

// setToken makes token c's (under c.mu): with a TokenSecret, a valid one
// sets the user and the session's expiry.
func (h *Hub) setToken(c *client, token string) {
	c.token = token
	if len(h.opts.Rules.TokenSecret) > 0 {
		if claims, err := h.opts.Rules.parseToken(c.token); err == nil {
			h.setExpiry(c, claims)
		}
	}
}

// serveClient starts c's pings, hands the session's messages to handle,
// and releases c's subscriptions when the session ends.
func (h *Hub) serveClient(c *client) {
	s := c.s
	c.ping = time.AfterFunc(h.opts.PingInterval, func() {
		if _, _, closed := c.s.CloseInfo(); !closed { // a stopped session must not re-arm it
			h.ping(c)
			c.ping.Reset(h.opts.PingInterval)
		}
	})
	h.mu.Lock()
	h.served[s] = c
	h.mu.Unlock()
	ctx := s.Context()
	s.OnMessage(func(raw string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ended {
			return // the session ended while this message waited
		}
		h.handle(ctx, c, raw)
	})
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.served, s)
		h.mu.Unlock()
	})
	h.releaseAtEnd(c, c.ping)
}

// setExpiry takes the claims of c's valid token (under c.mu): its user,
// and its exp, at which the session is closed.
func (h *Hub) setExpiry(c *client, claims *Claims) {
	c.user = claims.Subject
	exp := claims.ExpiresAt.Time // required by parseToken
	c.exp.Store(exp.UnixNano())
	if c.expiry == nil {
		c.expiry = time.AfterFunc(time.Until(exp), func() {
			// A refresh may have moved exp on after this timer fired:
			// then it was re-armed, and this run does nothing.
			if time.Now().UnixNano() >= c.exp.Load() {
				_ = c.s.CloseFor(session.CauseServer, CodeTokenExpired, ReasonTokenExpired)
			}
		})
		return
	}
	c.expiry.Reset(time.Until(exp))
}

// handle is one message from the client, with c.mu held.
func (h *Hub) handle(ctx context.Context, c *client, raw string) {
	var m clientMsg
	if err := json.Unmarshal([]byte(raw), &m); err != nil || m.Op == "" {
		h.send(c, encodeError(CodeBadRequest, "expected a JSON object with an op", ""))
		return
	}
	switch m.Op {
	case "subscribe":
		h.handleSubscribe(ctx, c, m)
	case "unsubscribe":
		if c.subs[m.Channel] == nil {
			h.send(c, encodeError(CodeNotSubscribed, "not subscribed", m.Channel))
			return
		}
		h.leave(c, m.Channel)
		h.send(c, encodeChannelOp("unsubscribed", m.Channel, 0))
	case "publish":
		h.handlePublish(ctx, c, m)
	case "rpc":
		h.handleRPC(ctx, c, m)
	case "refresh":
		h.handleRefresh(c, m)
	case "pong":
		id, err := strconv.ParseInt(string(m.ID), 10, 64)
		c.pingMu.Lock()
		// Only the latest ping counts, once: a late or repeated pong is
		// not a round trip. A client that never answers is not closed
		// for it; it just gives no sample.
		if err == nil && id == c.pingID && !c.pingSent.IsZero() {
			c.lastRTT = time.Since(c.pingSent)
			h.opts.Observer.ObservePingRTT(c.s.Transport(), c.lastRTT)
			c.pingSent = time.Time{}
		}
		c.pingMu.Unlock()
	default:
		h.send(c, encodeError(CodeUnknownOp, "unknown op "+jsonString(m.Op), ""))
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ping sends the next ping; its pong's round trip is recorded. An
// unanswered ping is simply superseded by the next one. The ping carries
// the last round trip measured, so that a page can show what the server
// sees (hub-client.js's onrtt) without a message of its own.
func (h *Hub) ping(c *client) {
	c.pingMu.Lock()
	c.pingID++
	id, rtt := c.pingID, c.lastRTT
	c.pingSent = time.Now()
	c.pingMu.Unlock()
	h.send(c, encodePing(id, rtt))
}

// send queues msg for c. Send never blocks: a client whose queue
// overflows is closed by its session (3009); that is counted here, once.
func (h *Hub) send(c *client, msg string) bool {
	return h.sent(c, c.s.Send(msg))
}

// sent is the outcome of a Send or SendMany to c's session: false when
// c is closed, and a subscriber closed for being slow is counted and
// logged.
func (h *Hub) sent(c *client, err error) bool {
	if err != nil {
		if err == session.ErrQueueFull {
			h.opts.Observer.SubscriberDropped(c.s.Transport())
			h.opts.Logger.Info("hub: subscriber too slow, disconnected", "transport", c.s.Transport().String())
		}
		return false
	}
	return true
}

func (h *Hub) handlePublish(ctx context.Context, c *client, m clientMsg) {
	switch {
	case !h.opts.Rules.Exists(m.Channel):
		h.send(c, encodeError(CodeUnknownChan, "no such channel", m.Channel))
	case !h.opts.Rules.CanPublish(m.Channel):
		h.refused(RefusedForbidden)
		h.send(c, encodeError(CodeForbidden, "browsers may not publish here", m.Channel))
	case !h.opts.Rules.PublishUnsubscribed && c.subs[m.Channel] == nil:
		h.refused(RefusedForbidden)
		h.send(c, encodeError(CodeForbidden, "subscribe to a channel before publishing to it", m.Channel))
	case len(m.Data) == 0:
		h.send(c, encodeError(CodeBadRequest, "data is required", m.Channel))
	case len(m.Data) > h.opts.MaxDataBytes:
		h.send(c, encodeError(CodeTooLarge, "data over the size limit", m.Channel))
	default:
		// Publishing needs the same right as reading: checked on every
		// publish, since the token may have expired since the subscribe.
		if err := h.opts.Rules.checkToken(c.token, m.Channel); err != nil {
			h.refused(RefusedForbidden)
			h.send(c, encodeError(CodeForbidden, err.Error(), m.Channel))
			return
		}
		data := m.Data
		if h.opts.Hooks != nil {
			d, err := h.opts.Hooks.Publish(ctx, PublishRequest{Session: c.id, Channel: m.Channel, Data: data, User: c.user})
			switch {
			case err != nil:
				h.hookFailed(HookPublish, err)
				h.send(c, encodeError(CodeUnavailable, hookUnavailable, m.Channel))
				return
			case d.Deny != nil:
				h.refused(RefusedForbidden)
				h.send(c, encodeError(CodeForbidden, denyReason(d.Deny), m.Channel))
				return
			case len(d.Data) > h.opts.MaxDataBytes:
				h.send(c, encodeError(CodeTooLarge, "the backend's data is over the size limit", m.Channel))
				return
			case len(d.Data) > 0:
				data = d.Data
			}
		}
		seq, err := h.Publish(ctx, m.Channel, data)
		if err != nil {
			h.send(c, encodeError(CodeUnavailable, err.Error(), m.Channel))
			return
		}
		h.send(c, encodeChannelOp("published", m.Channel, seq))
	}
}

// Publish publishes data (valid JSON) on channel through the broker.
func (h *Hub) Publish(ctx context.Context, channel string, data json.RawMessage) (uint64, error) {
	return h.opts.Broker.Publish(ctx, channel, data)
}
