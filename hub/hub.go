// Package hub is a pub/sub hub over SockJS: browsers subscribe to channels
// over whatever transport they could open, and backends publish through an
// HTTP API. Messages go through a Broker, so that many nodes can share
// channels.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
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

type nopObserver struct{}

func (nopObserver) ObservePingRTT(session.Transport, time.Duration) {}
func (nopObserver) SubscriberDropped(session.Transport)             {}

// Options configure a Hub. Zero values mean the documented defaults.
type Options struct {
	Rules Rules
	// Broker carries messages. Default a MemoryBroker.
	Broker Broker
	// PingInterval is how often each session is pinged to measure its
	// round trip. Default 25s.
	PingInterval time.Duration
	// MaxSubscriptions per session. Default 100.
	MaxSubscriptions int
	// MaxDataBytes bounds the data of one publish. Default 64 KiB.
	MaxDataBytes int
	// MaxChannels bounds the channels with local subscribers. Default 100,000.
	MaxChannels int
	Observer    Observer
	Logger      *slog.Logger
}

func (o Options) withDefaults() Options {
	o.Rules = o.Rules.withDefaults()
	if o.Broker == nil {
		o.Broker = NewMemoryBroker()
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 100
	}
	if o.MaxDataBytes <= 0 {
		o.MaxDataBytes = 64 << 10
	}
	if o.MaxChannels <= 0 {
		o.MaxChannels = 100_000
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
	opts Options

	mu       sync.Mutex
	channels map[string]*local
}

// local is one channel's subscribers on this node.
type local struct {
	mu     sync.Mutex
	subs   map[*client]struct{}
	cancel func()
}

// New returns a Hub.
func New(opts Options) *Hub {
	return &Hub{opts: opts.withDefaults(), channels: map[string]*local{}}
}

// Broker is the hub's broker.
func (h *Hub) Broker() Broker { return h.opts.Broker }

// Rules are the hub's channel rules.
func (h *Hub) Rules() Rules { return h.opts.Rules }

type client struct {
	s    *session.Session
	subs map[string]bool

	pingMu   sync.Mutex
	pingID   int64
	pingSent time.Time
}

// Serve is the SockJS session handler: mount it with transport.New.
func (h *Hub) Serve(s *session.Session) {
	c := &client{s: s, subs: map[string]bool{}}
	defer func() {
		for ch := range c.subs {
			h.unsubscribe(c, ch)
		}
	}()
	var ping *time.Timer
	ping = time.AfterFunc(h.opts.PingInterval, func() {
		if !c.s.Closed() { // a stopped session must not re-arm it
			h.ping(c)
			ping.Reset(h.opts.PingInterval)
		}
	})
	defer ping.Stop()
	token := s.Request().Query.Get("token")
	ctx := s.Context()
	for {
		raw, err := s.Recv(ctx)
		if err != nil {
			return
		}
		var m clientMsg
		if err := json.Unmarshal([]byte(raw), &m); err != nil || m.Op == "" {
			h.send(c, encodeError(CodeBadRequest, "expected a JSON object with an op", ""))
			continue
		}
		switch m.Op {
		case "subscribe":
			h.handleSubscribe(c, m.Channel, token)
		case "unsubscribe":
			if !c.subs[m.Channel] {
				h.send(c, encodeError(CodeNotSubscribed, "not subscribed", m.Channel))
				continue
			}
			h.unsubscribe(c, m.Channel)
			delete(c.subs, m.Channel)
			h.send(c, encodeChannelOp("unsubscribed", m.Channel, 0))
		case "publish":
			h.handlePublish(ctx, c, m)
		case "pong":
			c.pingMu.Lock()
			if m.ID == c.pingID && !c.pingSent.IsZero() {
				h.opts.Observer.ObservePingRTT(s.Transport(), time.Since(c.pingSent))
				c.pingSent = time.Time{}
			}
			c.pingMu.Unlock()
		default:
			h.send(c, encodeError(CodeUnknownOp, "unknown op "+jsonString(m.Op), ""))
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ping sends the next ping; its pong's round trip is recorded. An
// unanswered ping is simply superseded by the next one.
func (h *Hub) ping(c *client) {
	c.pingMu.Lock()
	c.pingID++
	id := c.pingID
	c.pingSent = time.Now()
	c.pingMu.Unlock()
	h.send(c, encodePing(id))
}

// send queues msg for c. Send never blocks: a client whose queue
// overflows is closed by its session (3009); that is counted here, once.
func (h *Hub) send(c *client, msg string) bool {
	if err := c.s.Send(msg); err != nil {
		if err == session.ErrQueueFull {
			h.opts.Observer.SubscriberDropped(c.s.Transport())
			h.opts.Logger.Info("hub: subscriber too slow, disconnected", "transport", c.s.Transport().String())
		}
		return false
	}
	return true
}

func (h *Hub) handleSubscribe(c *client, ch, token string) {
	switch {
	case !h.opts.Rules.Exists(ch):
		h.send(c, encodeError(CodeUnknownChan, "no such channel", ch))
		return
	case c.subs[ch]:
		h.send(c, encodeChannelOp("subscribed", ch, 0))
		return
	case len(c.subs) >= h.opts.MaxSubscriptions:
		h.send(c, encodeError(CodeTooMany, "subscription limit reached", ch))
		return
	}
	if err := h.opts.Rules.checkToken(token, ch); err != nil {
		h.send(c, encodeError(CodeForbidden, err.Error(), ch))
		return
	}
	if err := h.subscribe(c, ch); err != nil {
		h.send(c, encodeError(CodeUnavailable, err.Error(), ch))
		return
	}
	c.subs[ch] = true
	seq, _ := h.opts.Broker.LastSeq(c.s.Context(), ch)
	h.send(c, encodeChannelOp("subscribed", ch, seq))
}

func (h *Hub) handlePublish(ctx context.Context, c *client, m clientMsg) {
	switch {
	case !h.opts.Rules.Exists(m.Channel):
		h.send(c, encodeError(CodeUnknownChan, "no such channel", m.Channel))
	case !h.opts.Rules.CanPublish(m.Channel):
		h.send(c, encodeError(CodeForbidden, "browsers may not publish here", m.Channel))
	case len(m.Data) == 0:
		h.send(c, encodeError(CodeBadRequest, "data is required", m.Channel))
	case len(m.Data) > h.opts.MaxDataBytes:
		h.send(c, encodeError(CodeTooLarge, "data over the size limit", m.Channel))
	default:
		seq, err := h.Publish(ctx, m.Channel, m.Data)
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

var errTooManyChannels = errors.New("too many channels")

// subscribe adds c to channel ch, subscribing this node to the broker for
// the first local subscriber.
func (h *Hub) subscribe(c *client, ch string) error {
	h.mu.Lock()
	l := h.channels[ch]
	if l == nil {
		if len(h.channels) >= h.opts.MaxChannels {
			h.mu.Unlock()
			return errTooManyChannels
		}
		l = &local{subs: map[*client]struct{}{}}
		cancel, err := h.opts.Broker.Subscribe(ch, func(m Message) { h.deliver(l, m) })
		if err != nil {
			h.mu.Unlock()
			return err
		}
		l.cancel = cancel
		h.channels[ch] = l
	}
	l.mu.Lock()
	l.subs[c] = struct{}{}
	l.mu.Unlock()
	h.mu.Unlock()
	h.opts.Broker.AddPresence(ch, 1)
	return nil
}

func (h *Hub) unsubscribe(c *client, ch string) {
	h.mu.Lock()
	l := h.channels[ch]
	if l == nil {
		h.mu.Unlock()
		return
	}
	l.mu.Lock()
	_, was := l.subs[c]
	delete(l.subs, c)
	empty := len(l.subs) == 0
	l.mu.Unlock()
	if empty {
		delete(h.channels, ch)
		l.cancel()
	}
	h.mu.Unlock()
	if was {
		h.opts.Broker.AddPresence(ch, -1)
	}
}

// deliver fans one message out to the channel's local subscribers. The
// frame is encoded once; Send never blocks, so a slow subscriber delays
// no one: one whose queue overflows is closed by the session (3009) and
// counted here.
func (h *Hub) deliver(l *local, m Message) {
	frame := EncodeMessage(m.Channel, m.Seq, m.Data)
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.subs {
		if !h.send(c, frame) {
			// Closed, by overflow or otherwise: stop counting it now
			// rather than when its handler gets round to leaving.
			delete(l.subs, c)
			h.opts.Broker.AddPresence(m.Channel, -1)
		}
	}
}
