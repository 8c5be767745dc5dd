package proxy

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/session"
)

// conn is one proxied session. Its requests to the backend go one at a
// time, in order, on a goroutine that exists only while there is
// something to send (run): an idle session holds none.
type conn struct {
	svc    *service
	s      *session.Session
	id     string // opaque, for backends
	opened time.Time

	// Set once by the connect, before anything else reads them.
	user string
	meta json.RawMessage
	subs Subscriber

	// mu guards the fields below.
	mu        sync.Mutex
	pending   []string
	pendBytes int
	running   bool // run is going (or about to)
	connected bool // the connect was accepted
	refused   bool // the connect failed or was rejected: nothing more is sent
	broken    bool // a message request failed: only the close is sent
	ended     bool // the session is over: /close follows what is pending
	closeCode int
	closeWhy  string
	moving    bool          // a hand-off: run stops after the request in flight (handoff.go)
	halted    chan struct{} // closed when run's goroutine returns, for Export
}

// serve is the session handler of a proxied service.
func (svc *service) serve(s *session.Session) {
	c := &conn{svc: svc, s: s, id: s.ID(), opened: time.Now()}
	c.running = true // the connect
	svc.track(s, c)
	s.OnMessage(c.received)
	context.AfterFunc(s.Context(), c.end)
	c.start()
}

// start runs run on a goroutine of its own, counted so that Shutdown can
// wait for the close requests.
func (c *conn) start() {
	c.svc.g.started()
	go func() {
		defer c.svc.g.done()
		c.run()
		c.mu.Lock()
		if c.halted != nil {
			close(c.halted)
			c.halted = nil
		}
		c.mu.Unlock()
	}()
}

// received is a message from the client, on the goroutine that read it:
// it is queued (never blocking the client's reader), and run is started
// when it is not going.
func (c *conn) received(msg string) {
	c.mu.Lock()
	if c.refused || c.broken || c.ended {
		c.mu.Unlock()
		return
	}
	if c.pendBytes+len(msg) > c.svc.g.opts.MaxPendingBytes {
		c.mu.Unlock()
		c.svc.warn("proxy: client sent more than the backend took; closing", "limit_bytes", c.svc.g.opts.MaxPendingBytes)
		_ = c.s.CloseFor(session.CauseLimit, CodeBacklog, ReasonBacklog)
		return
	}
	c.pending = append(c.pending, msg)
	c.pendBytes += len(msg)
	start := c.claimRun()
	c.mu.Unlock()
	if start {
		c.start()
	}
}

// claimRun reports whether run is to be started, and marks it going then
// (with c.mu held): after the connect, when it is not going already.
func (c *conn) claimRun() bool {
	if c.running || !c.connected {
		return false
	}
	c.running = true
	return true
}

// end runs when the session closes: run sends what is pending, then the
// close.
func (c *conn) end() {
	c.svc.untrack(c.s)
	if c.s.HandedOff() {
		c.movedAway()
		return
	}
	code, reason, _ := c.s.CloseInfo()
	c.mu.Lock()
	c.ended, c.closeCode, c.closeWhy = true, code, reason
	start := c.claimRun()
	c.mu.Unlock()
	if start {
		c.start()
	}
}

// run sends the connect (the first time), then the pending messages in
// batches, then, once the session ended, the close; it returns when there
// is nothing left to send.
func (c *conn) run() {
	c.mu.Lock()
	connected := c.connected
	c.mu.Unlock()
	if !connected && !c.connect() {
		return
	}
	for {
		c.mu.Lock()
		if c.moving && !c.ended {
			// A hand-off: what is pending goes from the node that
			// resumes the session (Export).
			c.running = false
			c.mu.Unlock()
			return
		}
		if len(c.pending) == 0 {
			if c.ended && !c.refused {
				c.refused = true // nothing is sent after the close
				c.mu.Unlock()
				c.sendClose()
				return
			}
			c.running = false
			c.mu.Unlock()
			return
		}
		batch := c.takeBatch()
		c.mu.Unlock()
		if !c.message(batch) {
			return
		}
	}
}

// takeBatch takes the pending messages that fit in one request (at least
// one), with c.mu held.
func (c *conn) takeBatch() []string {
	n, size := 0, 0
	for n < len(c.pending) && (n == 0 || size+len(c.pending[n]) <= c.svc.g.opts.MaxBatchBytes) {
		size += len(c.pending[n])
		n++
	}
	batch := c.pending[:n:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil // let the batch's array go once it is sent
	}
	c.pendBytes -= size
	return batch
}

// connect asks the backend whether the session may open. It reports
// whether it was accepted; if not the session is closed, with the
// backend's code or the gateway's, and no close request follows.
func (c *conn) connect() bool {
	g := c.svc.g
	req := c.s.Request()
	body := connectRequest{
		Session:   c.id,
		Service:   c.svc.prefix,
		Transport: c.s.Transport().String(),
		Remote:    remoteHost(req.RemoteAddr),
		Node:      g.opts.Node,
		Headers:   map[string]string{},
		Query:     map[string]string{},
	}
	for _, h := range g.opts.Headers {
		if v := req.Header.Get(h); v != "" {
			body.Headers[h] = v
		}
	}
	for k, v := range req.Query {
		if len(v) > 0 {
			body.Query[k] = v[0]
		}
	}
	// The connect is bounded by the backend's timeout, not by the
	// session: a client that leaves during it still gets its close
	// request sent if the backend accepted it.
	var ans connectAnswer
	err := c.svc.call(context.WithoutCancel(c.s.Context()), "connect", body, &ans)
	switch {
	case err != nil:
		code, reason := failure(err)
		c.refuse(code, reason, "proxy: connect failed", err)
		return false
	case ans.Reject != nil:
		if !validCode(ans.Reject.Code) {
			c.refuse(CodeBackendFailed, ReasonBackendFailed, "proxy: connect rejected with a code outside 4000-4999", nil)
			return false
		}
		c.refuse(ans.Reject.Code, cutReason(ans.Reject.Reason), "", nil)
		return false
	}
	c.user, c.meta = ans.User, ans.Meta
	// Subscribe before the first message goes, so that what the backend
	// publishes in answer to it is not missed.
	if len(ans.Channels) > 0 {
		c.subscribe(ans.Channels, nil)
	}
	for _, m := range ans.Messages {
		if c.s.Send(m) != nil {
			break
		}
	}
	g.local.add(c)
	if d := g.opts.Directory; d != nil {
		e := directory.Entry{ID: c.id, Service: c.svc.prefix, User: c.user, Transport: c.s.Transport().String(),
			Node: g.opts.Node, Remote: body.Remote, Opened: c.opened}
		if err := d.Add(context.WithoutCancel(c.s.Context()), e); err != nil {
			c.svc.warn("proxy: directory could not record the session; the server API of other nodes will not find it", "err", err)
		}
	}
	c.mu.Lock()
	c.connected = true
	c.mu.Unlock()
	return true
}

// refuse ends a session whose connect did not succeed.
func (c *conn) refuse(code int, reason, logMsg string, err error) {
	c.mu.Lock()
	c.refused, c.running = true, false
	c.pending, c.pendBytes = nil, 0
	c.mu.Unlock()
	if logMsg != "" {
		attrs := []any{"code", code}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		c.svc.warn(logMsg, attrs...)
	}
	_ = c.s.CloseFor(session.CauseServer, code, reason)
}

// message sends one batch and applies the answer. It reports whether to
// go on; on a failure the session is closed and nothing more is sent.
func (c *conn) message(batch []string) bool {
	var ans messageAnswer
	err := c.svc.call(context.WithoutCancel(c.s.Context()), "message",
		messageRequest{Session: c.id, User: c.user, Meta: c.meta, Messages: batch}, &ans)
	if err != nil {
		code, reason := failure(err)
		c.svc.warn("proxy: message failed; closing the session", "code", code, "err", err)
		c.mu.Lock()
		c.broken, c.pending, c.pendBytes = true, nil, 0
		c.mu.Unlock()
		_ = c.s.CloseFor(session.CauseServer, code, reason)
		// The backend did take part in the session: it gets its close
		// (run goes on: ended is set by then, the close is sent).
		return true
	}
	if len(ans.Subscribe) > 0 || len(ans.Unsubscribe) > 0 {
		c.subscribe(ans.Subscribe, ans.Unsubscribe)
	}
	for _, m := range ans.Messages {
		if c.s.Send(m) != nil {
			break
		}
	}
	if ans.Close != nil {
		code, reason := ans.Close.Code, cutReason(ans.Close.Reason)
		if !validCode(code) {
			code, reason = CodeBackendFailed, ReasonBackendFailed
			c.svc.warn("proxy: backend closed a session with a code outside 4000-4999")
		}
		_ = c.s.CloseFor(session.CauseServer, code, reason)
	}
	return true
}

// sendClose tells the backend the session is over, once, and takes it
// out of the registry and the directory.
func (c *conn) sendClose() {
	g := c.svc.g
	g.local.remove(c)
	if d := g.opts.Directory; d != nil {
		if err := d.Remove(context.Background(), c.id, c.closeCode, c.closeWhy); err != nil {
			c.svc.warn("proxy: directory could not remove the session", "err", err)
		}
	}
	err := c.svc.call(context.Background(), "close",
		closeRequest{Session: c.id, User: c.user, Meta: c.meta, Code: c.closeCode, Reason: c.closeWhy}, nil)
	if err != nil {
		c.svc.warn("proxy: close request failed", "err", err)
	}
}

// subscribe applies a backend's channel changes.
func (c *conn) subscribe(sub, unsub []string) {
	g := c.svc.g
	if g.opts.Attach == nil {
		c.svc.warn("proxy: backend asked for hub channels but no hub is attached")
		return
	}
	if c.subs == nil {
		c.subs = g.opts.Attach(c.s)
	}
	for _, ch := range unsub {
		_ = c.subs.Unsubscribe(ch)
	}
	for _, ch := range sub {
		// The hub tells the session itself when a subscribe fails (its
		// error op), as it tells a /hub client.
		_ = c.subs.Subscribe(c.s.Context(), ch)
	}
}

// info is c as GET /api/sessions lists it.
func (c *conn) info() SessionInfo {
	return SessionInfo{Session: c.id, Service: c.svc.prefix, User: c.user, Transport: c.s.Transport().String(),
		Node: c.svc.g.opts.Node, Remote: remoteHost(c.s.Request().RemoteAddr), Opened: c.opened}
}
