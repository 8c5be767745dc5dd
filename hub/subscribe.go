package hub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/sockjsd/sockjsd/session"
)

// local is one channel's subscribers on this node.
type local struct {
	ready chan struct{} // closed once the broker subscription is made (or failed)
	// err and cancel are the broker subscription's outcome: written under
	// Hub.mu before ready is closed, read under Hub.mu (release) or after
	// ready (join), so that a joiner giving up early never reads them
	// while the subscription is being made.
	err    error
	cancel func()
	refs   int // clients joined or joining (under Hub.mu)

	mu   sync.Mutex
	subs map[*client]*sub
	// shares is deliverParallel's list of the subscribers, reused from
	// one publish to the next (under mu; emptied after each); out is
	// deliverNow's list of what one subscriber is sent, likewise.
	shares []subRef
	out    []string
	// fan is the channel's fan-out queue (fanout.go).
	fan fanQueue
}

type subRef struct {
	c *client
	s *sub
}

// sub is one client's subscription to one channel (fields under local.mu).
type sub struct {
	l *local
	// sess is the client's session (client.s), kept here for the
	// fan-out: one object less to reach per delivery.
	sess *session.Session
	// pending: the subscribe is still reading the broker's position or
	// history; live messages wait in buf meanwhile, so that the client
	// gets subscribed, then history, then live messages, each once.
	pending  bool
	buf      []Message
	bufBytes int
	epoch    string
	last     uint64 // the highest seq this client was given
}

// maxPendingBytes bounds the live messages held for one subscriber while
// its history is read (one broker round trip): a channel busy enough to
// overflow it in that time would overflow the session's send queue too,
// so the session is closed the same way (3009).
const maxPendingBytes = 1 << 20

// Errors of a subscribe (Member.Subscribe returns them; a hub client gets
// them as error ops).
var (
	ErrUnknownChannel  = errors.New("no such channel")
	ErrSessionLimit    = errors.New("subscription limit of this session reached")
	ErrAddressLimit    = errors.New("subscription limit of this address reached")
	ErrTooManyChannels = errors.New("too many channels on this node")
	ErrNotSubscribed   = errors.New("not subscribed")
)

func (h *Hub) handleSubscribe(ctx context.Context, c *client, m clientMsg) {
	ch := m.Channel
	if !h.opts.Rules.Exists(ch) {
		h.send(c, encodeError(CodeUnknownChan, "no such channel", ch))
		return
	}
	if s := c.subs[ch]; s != nil {
		s.l.mu.Lock()
		msg := encodeSubscribed(ch, Position{s.epoch, s.last}, nil)
		s.l.mu.Unlock()
		h.send(c, msg)
		return
	}
	if len(c.subs) >= h.opts.MaxSubscriptions {
		h.refused(RefusedSessionLimit)
		h.send(c, encodeError(CodeTooMany, "subscription limit of this session reached", ch))
		return
	}
	if err := h.opts.Rules.checkToken(c.token, ch); err != nil {
		h.refused(RefusedForbidden)
		h.send(c, encodeError(CodeForbidden, err.Error(), ch))
		return
	}
	if h.opts.Hooks != nil {
		d, err := h.opts.Hooks.Subscribe(ctx, SubscribeRequest{Session: c.id, Channel: ch, Remote: c.addr, User: c.user, Data: m.Data})
		if err != nil {
			h.hookFailed(HookSubscribe, err)
			h.send(c, encodeError(CodeUnavailable, hookUnavailable, ch))
			return
		}
		if d.Deny != nil {
			h.refused(RefusedForbidden)
			h.send(c, encodeError(CodeForbidden, denyReason(d.Deny), ch))
			return
		}
	}
	if err := h.subscribe(ctx, c, ch, m); err != nil {
		code := CodeUnavailable
		switch {
		case errors.Is(err, ErrAddressLimit):
			code = CodeTooMany
		case errors.Is(err, ErrTooManyChannels):
			code = CodeTooManyChannels
		}
		h.send(c, encodeError(code, err.Error(), ch))
	}
}

// subscribe joins c to ch and ends with activate (subscribed, history,
// live messages), or fails with nothing sent (under c.mu).
func (h *Hub) subscribe(ctx context.Context, c *client, ch string, m clientMsg) error {
	s, err := h.join(ctx, c, ch)
	if err != nil {
		return err
	}
	var hist History
	if m.Since != nil {
		hist, err = h.opts.Broker.History(ctx, ch, *m.Since, h.opts.HistorySize)
	} else {
		hist.Position, err = h.opts.Broker.Position(ctx, ch)
	}
	if err != nil {
		h.leave(c, ch)
		return err
	}
	h.activate(c, s, ch, m, hist)
	return nil
}

// activate ends a subscribe: subscribed, then the history the client
// missed, then the live messages that came meanwhile, with no gap and no
// duplicate: all under the channel's lock, so that no live message
// overtakes them.
func (h *Hub) activate(c *client, s *sub, ch string, m clientMsg, hist History) {
	h.activateFrom(c, s, ch, m, hist, false)
}

// activateFrom is activate; quiet (a resumed session, handoff.go) sends
// the subscribed frame only when the client must learn something from
// it: its position does not continue (recovered:false), or the channel's
// epoch started since it subscribed.
func (h *Hub) activateFrom(c *client, s *sub, ch string, m clientMsg, hist History, quiet bool) {
	var recovered *bool
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	buf := s.buf
	// Live from now on, whatever happens below: a closed session stops
	// buffering too (deliver drops it at its next failed send).
	s.buf, s.bufBytes, s.pending = nil, 0, false
	s.epoch, s.last = hist.Epoch, hist.Seq
	if m.Since != nil {
		ok := hist.Complete && (m.Epoch == "" || m.Epoch == hist.Epoch)
		// The replay must reach the channel's position: a broker that
		// keeps more than the hub replays cannot fill the rest.
		if n := len(hist.Messages); ok && (n == 0 && *m.Since != hist.Seq || n > 0 && hist.Messages[n-1].Seq != hist.Seq) {
			ok = false
		}
		recovered = &ok
		if ok {
			s.last = *m.Since
		}
	}
	switch {
	case !quiet:
		if !h.send(c, encodeSubscribed(ch, hist.Position, recovered)) {
			return
		}
	case !*recovered:
		h.reset(c.s.Transport(), ResetGap)
		if !h.send(c, encodeSubscribed(ch, hist.Position, recovered)) {
			return
		}
	case m.Epoch == "" && *m.Since == 0 && hist.Epoch != "":
		// The channel had no epoch when the client subscribed: its first
		// message started one, which the client is told of as a live
		// subscriber would be (deliverOne).
		if !h.send(c, encodeSubscribed(ch, Position{hist.Epoch, 0}, recovered)) {
			return
		}
	}
	if recovered != nil && *recovered {
		for _, msg := range hist.Messages {
			if msg.Seq > s.last {
				s.last = msg.Seq
				if !h.send(c, EncodeMessage(ch, msg.Seq, msg.Data)) {
					return
				}
			}
		}
	}
	var out []string
	for _, msg := range buf {
		out = h.deliverOne(c, s, msg, "", out)
	}
	for _, msg := range out {
		if !h.send(c, msg) {
			return
		}
	}
}

// join adds c to channel ch, subscribing this node to the broker for the
// first local subscriber, and counts the subscription against c's
// address. The broker subscription is shared by every local subscriber of
// the channel, so it is made on its own goroutine with no client's
// cancellation (context.WithoutCancel; the broker bounds it: Redis's
// SubscribeTimeout): the first subscriber leaving must not fail the
// others waiting for it. Each joiner, the first included, stops waiting
// when its own ctx ends. Nothing here holds the hub's lock across the
// broker's network round trip.
func (h *Hub) join(ctx context.Context, c *client, ch string) (*sub, error) {
	h.mu.Lock()
	if h.perAddr[c.addr] >= h.opts.MaxSubscriptionsPerAddress {
		h.mu.Unlock()
		h.refused(RefusedAddressLimit)
		return nil, ErrAddressLimit
	}
	l := h.channels[ch]
	if l == nil {
		if len(h.channels) >= h.opts.MaxChannels {
			h.mu.Unlock()
			h.refused(RefusedChannelLimit)
			return nil, ErrTooManyChannels
		}
		l = &local{ready: make(chan struct{}), subs: map[*client]*sub{}}
		h.channels[ch] = l
		h.subscribing.Add(1)
		go h.subscribeShared(context.WithoutCancel(ctx), ch, l)
	}
	l.refs++
	h.perAddr[c.addr]++
	h.mu.Unlock()

	select {
	case <-l.ready:
	case <-ctx.Done():
		h.release(c.addr, ch, l)
		return nil, ctx.Err()
	}
	// Written before ready was closed: no lock needed to read it now.
	if l.err != nil {
		h.release(c.addr, ch, l)
		return nil, l.err
	}
	s := &sub{l: l, sess: c.s, pending: true}
	l.mu.Lock()
	l.subs[c] = s
	// Counted under the channel's lock, like the removal in deliver, so
	// that the two cannot apply out of order.
	h.opts.Broker.AddPresence(ch, 1)
	l.mu.Unlock()
	c.subs[ch] = s
	return s, nil
}

// subscribeShared makes l's broker subscription and publishes its outcome
// under the hub's lock. When every joiner gave up meanwhile (refs 0:
// release found no cancel to call and forgot l), the subscription is
// cancelled here, so that it does not outlive them.
func (h *Hub) subscribeShared(ctx context.Context, ch string, l *local) {
	defer h.subscribing.Done()
	cancel, err := h.opts.Broker.Subscribe(ctx, ch, func(m Message) { h.deliver(l, m) })
	if err != nil {
		err = fmt.Errorf("subscribe to the broker: %w", err)
	}
	h.mu.Lock()
	l.cancel, l.err = cancel, err
	orphan := err == nil && l.refs == 0
	if err != nil && h.channels[ch] == l {
		delete(h.channels, ch) // the next subscribe tries again
	}
	h.mu.Unlock()
	close(l.ready)
	if orphan {
		cancel()
	}
}

// leave removes c from ch.
func (h *Hub) leave(c *client, ch string) {
	s := c.subs[ch]
	if s == nil {
		return
	}
	delete(c.subs, ch)
	s.l.mu.Lock()
	if _, was := s.l.subs[c]; was {
		delete(s.l.subs, c)
		h.opts.Broker.AddPresence(ch, -1)
	}
	s.l.mu.Unlock()
	h.release(c.addr, ch, s.l)
}

// release undoes join's counts, and the broker subscription with the
// channel's last local subscriber.
func (h *Hub) release(addr, ch string, l *local) {
	h.mu.Lock()
	if h.perAddr[addr]--; h.perAddr[addr] <= 0 {
		delete(h.perAddr, addr)
	}
	l.refs--
	last := l.refs == 0
	if (last || l.err != nil) && h.channels[ch] == l {
		delete(h.channels, ch)
	}
	// nil while the subscription is still being made: subscribeShared
	// then sees refs 0 and cancels it itself.
	cancel := l.cancel
	h.mu.Unlock()
	if last && cancel != nil {
		cancel()
	}
}

// deliverNow fans msgs (one publish, or a few that queued meanwhile:
// fanout.go) out to the channel's local subscribers, on the channel's
// fan-out goroutine. Each message's frame is encoded once; Send never
// blocks, so a slow subscriber delays no one: one whose queue overflows
// is closed by the session (3009) and counted here. Send writes to an
// idle websocket itself (one non-blocking write, one for all of msgs:
// SendMany), so the fan-out is this goroutine's work: a large channel is
// shared among up to GOMAXPROCS goroutines (deliverParallel).
func (h *Hub) deliverNow(l *local, msgs []Message) {
	frames := make([]string, len(msgs))
	for i, m := range msgs {
		frames[i] = EncodeMessage(m.Channel, m.Seq, m.Data)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if procs := runtime.GOMAXPROCS(0); procs > 1 && len(l.subs) >= h.parallelMin {
		h.deliverParallel(l, msgs, frames, procs)
		return
	}
	out := l.out[:0]
	for c, s := range l.subs {
		if !h.deliverTo(c, s, msgs, frames, &out) {
			// Closed, by overflow or otherwise: stop counting it now
			// rather than when its handler gets round to leaving.
			delete(l.subs, c)
			h.opts.Broker.AddPresence(msgs[0].Channel, -1)
		}
	}
	l.out = out[:0]
}

// parallelMin is the fewest local subscribers for which a publish is
// fanned out by several goroutines; each takes at least half as many.
// Below it, starting them costs more than it saves. A variable for tests,
// read by New.
var parallelMin = 512

// deliverParallel is deliver's loop on procs goroutines at once (the
// caller's among them), each with its share of the subscribers, and ends
// when all have: the channel's lock is held throughout, so the next
// publish still reaches every subscriber after this one. Each subscriber
// is in one share, so its state has one writer.
func (h *Hub) deliverParallel(l *local, msgs []Message, frames []string, procs int) {
	refs := l.shares[:0]
	for c, s := range l.subs {
		refs = append(refs, subRef{c, s})
	}
	parts := max(min(procs, len(refs)/(h.parallelMin/2)), 1)
	size := (len(refs) + parts - 1) / parts
	failed := make([][]*client, parts)
	var wg sync.WaitGroup
	for i := range parts {
		share := refs[i*size : min((i+1)*size, len(refs))]
		run := func() {
			var out []string
			for _, r := range share {
				if !h.deliverTo(r.c, r.s, msgs, frames, &out) {
					failed[i] = append(failed[i], r.c)
				}
			}
		}
		if i == parts-1 {
			run()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	wg.Wait()
	for _, f := range failed {
		for _, c := range f {
			delete(l.subs, c)
			h.opts.Broker.AddPresence(msgs[0].Channel, -1)
		}
	}
	clear(refs) // hold no client past its subscription
	l.shares = refs[:0]
	if cap(refs) > 2*len(l.subs)+h.parallelMin {
		l.shares = nil // the channel shrank: let a large array go
	}
}

// deliverTo gives msgs to one subscriber (under local.mu): held while its
// subscribe is pending, sent otherwise, all at once (out is the caller's
// scratch array, handed back emptied). False when it is closed.
func (h *Hub) deliverTo(c *client, s *sub, msgs []Message, frames []string, out *[]string) bool {
	if s.pending {
		for _, m := range msgs {
			s.buf = append(s.buf, m)
			s.bufBytes += len(m.Data)
		}
		if s.bufBytes > maxPendingBytes {
			h.opts.Observer.SubscriberDropped(c.s.Transport())
			_ = c.s.CloseFor(session.CauseLimit, session.CodeQueueFull, session.ReasonQueueFull)
			return false
		}
		return true
	}
	o := (*out)[:0]
	for i := range msgs {
		o = h.deliverOne(c, s, msgs[i], frames[i], o)
	}
	var ok bool
	switch len(o) {
	case 0:
		ok = true // it had them all
	case 1:
		ok = h.sent(c, s.sess.Send(o[0]))
	default:
		ok = h.sent(c, s.sess.SendMany(o))
	}
	clear(o) // hold no message past its write
	*out = o[:0]
	return ok
}

// deliverOne appends to out what one active subscriber is sent for m,
// nothing if it already had it (under local.mu). Whenever the channel's
// sequence does not continue where this subscriber stands, it is told
// with a subscribed carrying recovered:false and the position just before
// m, before m itself: a new epoch (the broker forgot the channel, or
// Redis restarted), or a gap within the epoch (the broker could not
// deliver some messages: its history no longer held them after a
// reconnect). The gap check is the hub's own, whatever the broker
// promises, so that no broker fault can skip messages silently.
func (h *Hub) deliverOne(c *client, s *sub, m Message, frame string, out []string) []string {
	if m.Epoch != s.epoch && s.epoch == "" && s.last == 0 && m.Seq == 1 {
		// The channel had no epoch when this client subscribed (nothing
		// published yet, or Redis lost it) and its first message starts
		// one: nothing was missed, but the client must learn the epoch,
		// or a later resume with since and no epoch would be taken for
		// whatever epoch the channel has by then.
		yes := true
		s.epoch = m.Epoch
		out = append(out, encodeSubscribed(m.Channel, Position{m.Epoch, 0}, &yes))
	}
	reason := ""
	switch {
	case m.Epoch != s.epoch:
		reason = ResetEpoch
	case m.Seq > s.last+1:
		reason = ResetGap
	}
	if reason != "" {
		no := false
		s.epoch, s.last = m.Epoch, m.Seq-1
		h.reset(c.s.Transport(), reason)
		out = append(out, encodeSubscribed(m.Channel, Position{m.Epoch, m.Seq - 1}, &no))
	}
	if m.Seq <= s.last {
		return out
	}
	s.last = m.Seq
	if frame == "" {
		frame = EncodeMessage(m.Channel, m.Seq, m.Data)
	}
	return append(out, frame)
}
