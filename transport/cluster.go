package transport

import (
	"context"
	"github.com/sockjsd/sockjsd/session"
	"log/slog"
	"net/http"
	"time"
)

// Cluster lets several nodes serve one service behind a load balancer
// without sticky sessions: an HTTP session lives on the node that created
// it, and a request for it that lands on another node must reach that
// one. The transport package only asks, before serving an HTTP session
// endpoint, whether the cluster answers the request itself; routing,
// ownership records and node-to-node requests are the cluster's. Package
// cluster implements it on Redis. Websocket sessions are one connection
// from start to end and never concern it.
type Cluster interface {
	// Join makes a service a member of the cluster. New calls it once
	// per Handler; the member lives until the Handler's Shutdown.
	Join(svc ClusterService) ClusterMember
}

// ClusterService is what a cluster sees of one service on this node.
type ClusterService interface {
	// Prefix is the service's URL prefix ("/echo").
	Prefix() string
	// Session is this node's session with URL session id sid, or nil.
	Session(sid string) *session.Session
	// Accepting reports whether the service still opens sessions: false
	// once Shutdown began.
	Accepting() bool
	// PollWait is how long a poll may wait on this service for data
	// before it is answered anyway (the heartbeat delay plus the wait of
	// a second receiving request).
	PollWait() time.Duration
	// Logger is the service's logger.
	Logger() *slog.Logger
	// HandedOff reports whether this node handed the session with URL
	// session id sid off to another node (Handler.HandOff): it keeps a
	// stub that tells receiving requests to ask again.
	HandedOff(sid string) bool
	// Resume makes a session of this node from the state another node
	// handed off (ClusterHandOff.HandOff's state) under URL session id
	// sid, and starts the service's Options.HandOff.Resume on it.
	Resume(sid string, state []byte) error
	// Release ends the answer of the receiving request attached to the
	// session with URL session id sid normally (a heartbeat, then the
	// end of the answer, as a stream ends at its limit): the client
	// asks again, and the session goes on. It reports whether a receiver
	// was attached. A node that relays the request asks for it when it
	// stops (ClusterRelays).
	Release(sid string) bool
}

// ClusterRelays is a ClusterMember that relays receiving requests to the
// nodes that own their sessions (package cluster's does). Shutdown calls
// EndRelays, which has each owner end the answer relayed here normally,
// so that the server's shutdown, which waits for its requests in flight,
// does not cut them: a cut poll or stream would end the page's session.
type ClusterRelays interface {
	EndRelays(ctx context.Context)
}

// ClusterHandOff is a ClusterMember that can move sessions to other nodes
// (package cluster's does on a store that holds state: RedisStore).
type ClusterHandOff interface {
	// HandOff stores state as the session's hand-off record in place of
	// this node's ownership: the next node that gets a request for sid
	// takes the record and resumes the session (ClusterService.Resume).
	HandOff(ctx context.Context, sid string, state []byte) error
	// Redirect answers a send request (xhr_send, jsonp_send) that reached
	// this node for a session it handed off or is handing off: once
	// another node has taken the session, the request is forwarded there.
	Redirect(w http.ResponseWriter, r *http.Request, sid, endpoint string)
}

// ClusterMember is one service's membership of a cluster.
type ClusterMember interface {
	// Route runs before an HTTP session endpoint is served. endpoint is
	// xhr, xhr_streaming, xhr_send, eventsource, htmlfile, jsonp or
	// jsonp_send. It returns true when it answered the request itself
	// (forwarded it to another node, or refused it), false when this
	// node serves it; it may adjust r before returning false (a request
	// another node forwarded here carries the client's address).
	Route(w http.ResponseWriter, r *http.Request, sid, endpoint string) bool
	// Opened is told of every HTTP session this node created.
	Opened(sid string, s *session.Session)
	// Leave ends the membership and releases what it holds (the
	// records of this node's sessions). Shutdown calls it.
	Leave(ctx context.Context) error
}

// clusterService is a Handler as its cluster sees it.
type clusterService struct{ h *Handler }

func (c clusterService) Prefix() string { return c.h.prefix }
func (c clusterService) Session(sid string) *session.Session {
	return (*session.Session)(c.h.reg.Get(sid))
}
func (c clusterService) Accepting() bool      { return !c.h.closing.Load() }
func (c clusterService) Logger() *slog.Logger { return c.h.log }
func (c clusterService) HandedOff(sid string) bool {
	s := c.h.reg.Get(sid)
	return s != nil && s.HandedOff()
}
func (c clusterService) Resume(sid string, state []byte) error { return c.h.resume(sid, state) }
func (c clusterService) Release(sid string) bool {
	s := c.h.reg.Get(sid)
	return s != nil && s.Release()
}
func (c clusterService) PollWait() time.Duration {
	return c.h.opts.Session.HeartbeatDelay + c.h.opts.Session.ReceiverWait
}
