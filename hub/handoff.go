package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// Session hand-off (transport.HandOff): when a node of a cluster drains,
// each HTTP hub session moves to another node without its page noticing.
// Export stops the session's subscriptions on the draining node and
// records, for each channel, the position of the last message queued for
// the session (queued: the transport hands the messages not yet written
// over with the session); Resume subscribes the session again on the new
// node from that position, through the broker's history (the same path
// as a client's subscribe with since), without the subscribed frames the
// page did not ask for. Messages published in between come from history,
// once. Only if history no longer reaches back is the page told, with
// the unasked subscribed carrying recovered:false it already handles.

// handOffState is a hub session's state in a hand-off record.
type handOffState struct {
	Token string       `json:"token,omitempty"`
	Subs  []handOffSub `json:"subs,omitempty"`
	Ping  *handOffPing `json:"ping,omitempty"`
}

type handOffSub struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch,omitempty"`
	Last    uint64 `json:"last"`
}

// handOffPing carries the last round trip, which the next ping reports.
type handOffPing struct {
	ID      int64 `json:"id"`
	LastRTT int64 `json:"rtt_ns"`
}

// ErrNotServed is Export's error for a session the hub does not serve.
var ErrNotServed = errors.New("hub: not a session of this hub")

// Export implements transport.HandOff: it ends the session's
// subscriptions here and returns what Resume needs (the token, and each
// channel's position). Nothing is sent to the session once it returned.
func (h *Hub) Export(s *session.Session) ([]byte, error) {
	h.mu.Lock()
	c := h.served[s]
	h.mu.Unlock()
	if c == nil {
		return nil, ErrNotServed
	}
	c.ping.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil, session.ErrClosed
	}
	c.ended = true // nothing more is handled here
	if c.expiry != nil {
		c.expiry.Stop()
	}
	st := handOffState{Token: c.token, Subs: h.exportSubs(c)}
	c.pingMu.Lock()
	st.Ping = &handOffPing{ID: c.pingID, LastRTT: int64(c.lastRTT)}
	c.pingMu.Unlock()
	return json.Marshal(st)
}

// exportSubs ends c's subscriptions here and returns each channel's
// position, sorted by channel (under c.mu).
func (h *Hub) exportSubs(c *client) []handOffSub {
	var subs []handOffSub
	for ch, sub := range c.subs {
		l := sub.l
		l.mu.Lock()
		// Read and leave under the channel's lock: no message is
		// delivered to the session after its position was read.
		subs = append(subs, handOffSub{Channel: ch, Epoch: sub.epoch, Last: sub.last})
		if _, was := l.subs[c]; was {
			delete(l.subs, c)
			h.opts.Broker.AddPresence(ch, -1)
		}
		l.mu.Unlock()
		delete(c.subs, ch)
		h.release(c.addr, ch, l)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].Channel < subs[j].Channel })
	return subs
}

// resumeTimeout bounds resuming one session's subscriptions: a broker
// round trip per channel.
const resumeTimeout = 10 * time.Second

// Resume implements transport.HandOff: it serves s as Serve does, with
// the token and subscriptions Export recorded on the node that handed it
// off. Each channel resumes after the last message that node queued for
// the session, from the broker's history; the page is sent nothing it
// did not ask for, unless history no longer reaches back
// (subscribed with recovered:false) or the channel's first message
// started its epoch meanwhile (subscribed with recovered:true and seq 0,
// as a live subscriber is told).
func (h *Hub) Resume(s *session.Session, state []byte) error {
	var st handOffState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("hub: hand-off state: %w", err)
	}
	c := h.newClient(s, s.Request())
	ctx, cancel := context.WithTimeout(s.Context(), resumeTimeout)
	defer cancel()
	c.mu.Lock()
	h.setToken(c, st.Token)
	if st.Ping != nil {
		c.pingID, c.lastRTT = st.Ping.ID, time.Duration(st.Ping.LastRTT)
	}
	err := h.resubscribeAll(ctx, c, st.Subs)
	c.mu.Unlock()
	// Messages the client sent meanwhile are handled from here on, after
	// the subscriptions are back.
	h.serveClient(c)
	return err
}

// resubscribeAll subscribes a resumed session again to each channel
// from its recorded position (under c.mu).
func (h *Hub) resubscribeAll(ctx context.Context, c *client, subs []handOffSub) error {
	var err error
	for _, sub := range subs {
		if len(c.subs) >= h.opts.MaxSubscriptions || !h.opts.Rules.Exists(sub.Channel) {
			continue
		}
		since := sub.Last
		m := clientMsg{Op: "subscribe", Channel: sub.Channel, Since: &since, Epoch: sub.Epoch}
		if e := h.resubscribe(ctx, c, m); e != nil {
			err = errors.Join(err, fmt.Errorf("hub: resubscribe to %s: %w", sub.Channel, e))
		}
	}
	return err
}

// Export ends the Member's subscriptions on this node and returns each
// channel's position, for Resume on the node a hand-off moves the session
// to (transport.HandOff: the proxy's sessions). The hub sends the session
// nothing once it returned.
func (m *Member) Export() ([]byte, error) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil, session.ErrClosed
	}
	c.ended = true // nothing more is delivered here
	return json.Marshal(handOffState{Subs: m.h.exportSubs(c)})
}

// Resume subscribes the Member of a resumed session again, from the
// positions Export recorded on the node that handed it off, as Hub.Resume
// does for a hub session: the messages published after them arrive once,
// in order, and no subscribed frame unless history no longer reaches back.
func (m *Member) Resume(state []byte) error {
	var st handOffState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("hub: hand-off state: %w", err)
	}
	c := m.c
	ctx, cancel := context.WithTimeout(c.s.Context(), resumeTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.h.resubscribeAll(ctx, c, st.Subs)
}

// resubscribe is subscribe for a resumed session: activate sends no
// subscribed frame when the position continues (under c.mu).
func (h *Hub) resubscribe(ctx context.Context, c *client, m clientMsg) error {
	s, err := h.join(ctx, c, m.Channel)
	if err != nil {
		return err
	}
	hist, err := h.opts.Broker.History(ctx, m.Channel, *m.Since, h.opts.HistorySize)
	if err != nil {
		h.leave(c, m.Channel)
		return err
	}
	h.activateFrom(c, s, m.Channel, m, hist, true)
	return nil
}
