package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/session"
)

// Session hand-off (transport.HandOff): when a node of a cluster drains,
// each HTTP session of a proxied service moves to another node, and
// neither the page nor the backend notices. Export waits for the
// session's request in flight to the backend (so that the messages of
// its answer are queued, and handed over with the session), then stops
// the session here without a close request; Resume carries on on the new
// node without a connect (the backend accepted the session already): the
// same session id, user and meta, and the client's messages the backend
// was not sent yet go to it from there, in order, once. The directory's
// record moves with the session (Adopt) without an event: no
// session.closed, session.opened, user.offline or user.online.
//
// Hub channels the backend subscribed the session to move with it when
// its Subscriber implements SubscriberHandOff (hub.Member does): from the
// position of the last message queued for the session, through the
// broker's history. With a Subscriber that does not, a session with
// channels is not handed off (Export fails): it is closed with 1001 at
// shutdown, and its backend gets its close, as without hand-off.

// handOffState is a proxied session's state in a hand-off record.
type handOffState struct {
	User   string          `json:"user,omitempty"`
	Meta   json.RawMessage `json:"meta,omitempty"`
	Opened time.Time       `json:"opened"`
	// Pending are the client's messages not sent to the backend yet, in
	// order.
	Pending []string `json:"pending,omitempty"`
	// Subs is the Subscriber's state (SubscriberHandOff.Export).
	Subs json.RawMessage `json:"subs,omitempty"`
}

// SubscriberHandOff is a Subscriber whose channels move with a handed-off
// session (hub.Member): Export ends them on the draining node and returns
// their positions; Resume, on the Subscriber Attach returns for the
// resumed session, subscribes again from there.
type SubscriberHandOff interface {
	Export() ([]byte, error)
	Resume(state []byte) error
}

// Mover is what a Directory implements for hand-offs (package directory's
// do): Adopt records, without events, that a session moved to this node;
// Forget, on the node it left, stops this node keeping its record.
// Without it a resumed session is Added, as a new one is.
type Mover interface {
	Adopt(ctx context.Context, e directory.Entry) error
	Forget(id string)
}

// Errors of Export.
var (
	// ErrNotProxied: the session is not one of the service's.
	ErrNotProxied = errors.New("proxy: not a session of this service")
	// ErrSubscribed: the backend subscribed the session to hub channels,
	// and its Subscriber does not implement SubscriberHandOff.
	ErrSubscribed = errors.New("proxy: a session with hub channels is not handed off by its subscriber")
)

// HandOff is a proxied service's transport.HandOff: set it as the
// service's transport.Options.HandOff, in cluster mode.
type HandOff struct{ svc *service }

// HandOff returns the hand-off of the service Service made at prefix.
func (g *Gateway) HandOff(prefix string) (*HandOff, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	svc := g.services[prefix]
	if svc == nil {
		return nil, fmt.Errorf("proxy: no service at %q", prefix)
	}
	return &HandOff{svc}, nil
}

// exportSlack is added to the backend's Timeout in Export's wait for the
// request in flight, which that Timeout bounds already.
const exportSlack = time.Second

// Export implements transport.HandOff, on the draining node, for a frozen
// session: it waits (within the backend's Timeout) for the request in
// flight, connect or message, whose answer's messages are queued in the
// session then, and returns the user, meta and the client's messages the
// backend was not sent yet. Nothing more is sent to the backend for the
// session from this node once it returned (and no close request when the
// transport ends it as handed off).
func (ho *HandOff) Export(s *session.Session) ([]byte, error) {
	c := ho.svc.conn(s)
	if c == nil {
		return nil, ErrNotProxied
	}
	c.mu.Lock()
	c.moving = true
	var halted chan struct{}
	if c.running {
		if c.halted == nil {
			c.halted = make(chan struct{})
		}
		halted = c.halted
	}
	c.mu.Unlock()
	if halted != nil {
		t := time.NewTimer(ho.svc.g.opts.Timeout + exportSlack)
		defer t.Stop()
		select {
		case <-halted:
		case <-t.C:
			c.stayHere()
			return nil, errors.New("proxy: the backend request in flight did not end")
		}
	}
	c.mu.Lock()
	switch {
	case c.refused || c.broken || c.ended || !c.connected:
		c.mu.Unlock()
		c.stayHere()
		return nil, session.ErrClosed
	}
	st := handOffState{User: c.user, Meta: c.meta, Opened: c.opened, Pending: c.pending}
	c.mu.Unlock()
	// c.subs is set by run, which is not going.
	if c.subs != nil {
		sh, ok := c.subs.(SubscriberHandOff)
		if !ok {
			c.stayHere()
			return nil, ErrSubscribed
		}
		subs, err := sh.Export()
		if err != nil {
			c.stayHere()
			return nil, fmt.Errorf("proxy: hub channels: %w", err)
		}
		st.Subs = subs
	}
	return json.Marshal(st)
}

// stayHere undoes Export's stop: the session goes on on this node (its
// hand-off failed, and the transport closes it or thaws it), and what is
// pending goes to the backend from here.
func (c *conn) stayHere() {
	c.mu.Lock()
	c.moving = false
	start := !c.refused && (len(c.pending) > 0 || c.ended) && c.claimRun()
	c.mu.Unlock()
	if start {
		c.start()
	}
}

// movedAway runs when the transport ended the session here as handed
// off: it is not over, so no close request is sent and the directory's
// record is left for the node that resumes it (Mover.Adopt).
func (c *conn) movedAway() {
	c.mu.Lock()
	c.refused = true // nothing more is sent from here
	c.pending, c.pendBytes = nil, 0
	c.mu.Unlock()
	g := c.svc.g
	g.local.remove(c)
	if m, ok := g.opts.Directory.(Mover); ok {
		m.Forget(c.id)
	}
}

// Resume implements transport.HandOff, on the node that resumes a
// session another node exported: the session carries on without a
// connect, its pending messages are sent to the backend in order (before
// those the client sent since), and the directory records it here
// (Mover.Adopt: no event).
func (ho *HandOff) Resume(s *session.Session, state []byte) error {
	var st handOffState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("proxy: hand-off state: %w", err)
	}
	svc, g := ho.svc, ho.svc.g
	c := &conn{svc: svc, s: s, id: s.ID(), opened: st.Opened, user: st.User, meta: st.Meta, connected: true}
	c.pending = st.Pending
	for _, m := range c.pending {
		c.pendBytes += len(m)
	}
	c.running = len(c.pending) > 0
	svc.track(s, c)
	g.local.add(c)
	if d := g.opts.Directory; d != nil {
		e := directory.Entry{ID: c.id, Service: svc.prefix, User: c.user, Transport: s.Transport().String(),
			Node: g.opts.Node, Remote: remoteHost(s.Request().RemoteAddr), Opened: c.opened}
		ctx := context.WithoutCancel(s.Context())
		var err error
		if m, ok := d.(Mover); ok {
			err = m.Adopt(ctx, e)
		} else {
			err = d.Add(ctx, e)
		}
		if err != nil {
			svc.warn("proxy: directory could not record the resumed session; the server API of other nodes will not find it", "err", err)
		}
	}
	// The channels are back before the first message goes, as after a
	// connect, so that what the backend publishes in answer is not
	// missed. An error closes the session (the transport does): its
	// close request goes from here.
	var err error
	if len(st.Subs) > 0 {
		err = c.resubscribe(st.Subs)
	}
	// The client's messages the old node had not handed over come
	// through here after the pending ones.
	s.OnMessage(c.received)
	context.AfterFunc(s.Context(), c.end)
	if c.running {
		c.start()
	}
	return err
}

// resubscribe attaches the resumed session to the hub again, from the
// positions Export recorded.
func (c *conn) resubscribe(state []byte) error {
	if c.svc.g.opts.Attach == nil {
		return errors.New("proxy: a session with hub channels resumed on a node without a hub")
	}
	c.subs = c.svc.g.opts.Attach(c.s)
	sh, ok := c.subs.(SubscriberHandOff)
	if !ok {
		return ErrSubscribed
	}
	if err := sh.Resume(state); err != nil {
		return fmt.Errorf("proxy: hub channels: %w", err)
	}
	return nil
}
