package hub

import (
	"context"
	"slices"

	"github.com/sockjsd/sockjsd/session"
)

// Member is a session of another service (one the hub does not serve,
// such as the session proxy's) that the server subscribes to hub
// channels: Subscribe and Unsubscribe are the server's decisions, not
// the client's. The session receives the hub's own frames, the same as
// a /hub client gets, so that a page parses them the same way:
//
//	{"op":"subscribed","channel":"room.1","seq":N,"epoch":"E"}
//	{"op":"message","channel":"room.1","seq":N,"data":<any JSON>}
//	{"op":"unsubscribed","channel":"room.1"}
//
// (and an unasked subscribed with "recovered":false when a channel's
// sequence does not continue). Its subscriptions count against the hub's
// limits like a /hub client's (per session, per client address, channels
// per node) and are released when the session ends. No hook and no token
// is checked: the caller decided. The hub sends no pings to a Member's
// session and installs no OnMessage handler on it: its owner keeps both.
type Member struct {
	h *Hub
	c *client
}

// Attach returns s's Member, the same one for every call on one session.
func (h *Hub) Attach(s *session.Session) *Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.members[s]; m != nil {
		return m
	}
	c := h.newClient(s, s.Request()) // no pings, no hooks, no token: see Member
	m := &Member{h, c}
	h.members[s] = m
	context.AfterFunc(s.Context(), func() {
		h.mu.Lock()
		delete(h.members, s)
		h.mu.Unlock()
	})
	h.releaseAtEnd(c, nil)
	return m
}

// Subscribe subscribes the session to channel: it gets subscribed with
// the channel's position, then every message published after it. On a
// channel it is subscribed to already, it gets subscribed again, and
// nothing else changes. The errors are ErrUnknownChannel,
// ErrSessionLimit, ErrAddressLimit, ErrTooManyChannels,
// session.ErrClosed (the session ended), ctx's error, or the broker's.
// The wait for the broker stops when ctx or the session ends.
func (m *Member) Subscribe(ctx context.Context, channel string) error {
	h, c := m.h, m.c
	if !h.opts.Rules.Exists(channel) {
		return ErrUnknownChannel
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.s.Context(), cancel)
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.s.Context().Err() != nil {
		return session.ErrClosed
	}
	if s := c.subs[channel]; s != nil {
		s.l.mu.Lock()
		msg := encodeSubscribed(channel, Position{s.epoch, s.last}, nil)
		s.l.mu.Unlock()
		h.send(c, msg)
		return nil
	}
	if len(c.subs) >= h.opts.MaxSubscriptions {
		h.refused(RefusedSessionLimit)
		return ErrSessionLimit
	}
	err := h.subscribe(ctx, c, channel, clientMsg{Op: "subscribe", Channel: channel})
	if err != nil && c.s.Context().Err() != nil {
		return session.ErrClosed
	}
	return err
}

// Unsubscribe ends the session's subscription to channel; it gets
// unsubscribed. ErrNotSubscribed when it had none, session.ErrClosed
// once the session ended.
func (m *Member) Unsubscribe(channel string) error {
	h, c := m.h, m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.s.Context().Err() != nil {
		return session.ErrClosed
	}
	if c.subs[channel] == nil {
		return ErrNotSubscribed
	}
	h.leave(c, channel)
	h.send(c, encodeChannelOp("unsubscribed", channel, 0))
	return nil
}

// Channels are the channels the session is subscribed to, sorted.
func (m *Member) Channels() []string {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	out := make([]string, 0, len(m.c.subs))
	for ch := range m.c.subs {
		out = append(out, ch)
	}
	slices.Sort(out)
	return out
}
