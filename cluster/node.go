package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// A Node is this process's membership of a cluster: every service that
// joins it (transport.Options.Cluster) has its HTTP sessions recorded in
// the Store as owned by this node, and requests for other nodes' sessions
// forwarded there.
//
// The node that creates an HTTP session records itself as the session's
// owner; a request for the session that lands on another node is
// forwarded to the owner over HTTP, signed with the cluster secret
// (forward.go). The owner keeps its records alive and puts them back as
// soon as the store returns from a restart or an outage; a node that finds
// another owner recorded for a session it holds closes its copy
// (keep.go), so that once the store is reachable at most one node serves a
// session id.
type Node struct {
	opts     Options
	obs      Observer
	log      *slog.Logger
	proxy    *httputil.ReverseProxy
	cache    ownerCache
	nonces   nonceCache
	relays   relays // receiving requests relayed to their owners (relay.go)
	macs     macPool
	lastWarn atomic.Int64

	mu      sync.Mutex
	members map[*member]struct{}
	stop    chan struct{} // closed when the last member leaves: keepLoop returns
	done    chan struct{} // closed when keepLoop returned
	// cancel ends the context every store call of the running keepLoop
	// is made under: the last Leave calls it first, so that the loop's
	// retries, dials and waits for a pooled connection end at once, and
	// whatever a call it stopped waiting for brings back is not acted on
	// (keep.go, leaveWait).
	cancel context.CancelFunc
}

// member is one service's membership (transport.ClusterMember).
type member struct {
	n      *Node
	svc    transport.ClusterService
	prefix string

	mu    sync.Mutex
	owned map[string]*session.Session // URL session id -> the session we own under it
	// resuming: URL session ids a request of this node is taking over
	// from a hand-off record (handoff.go); closed when it is done.
	resuming map[string]chan struct{}
}

// Observer is told about every forwarded request. endpoint is one of the
// seven HTTP session endpoints; result is "ok" (the owner answered),
// "owner_gone" (nothing listens at the owner's address: the request was
// served here as for an unknown session), "moved" (the node reached
// answered 421 naming another owner, tried next, or the owner broke the
// connection and the store names another), "retried" (the owner broke
// the connection before answering a receiving request and is still the
// owner: tried once more), "timeout" (the owner was
// reached but did not begin its answer within ForwardTimeout, or the
// connection could not be set up in time: the client got 504),
// "client_gone" (the client left first, as streaming clients do) or
// "error" (the owner failed after being reached; the client got 502 or a
// cut response). d is the time until the owner's response headers
// arrived. Metrics implements it.
//
// StoreWaiting is told, with +1 and then -1, about each request that waits
// for the store (its recovery grace or an outage; see Options.StoreWait),
// and StoreUnavailable about each request answered 503 because the store
// did not answer within StoreWait.
type Observer interface {
	Forwarded(endpoint, result string, d time.Duration)
	StoreWaiting(delta int)
	StoreUnavailable(endpoint string)
}

// Options configure a Node. Store, Self and Secret are required; zero
// values of the others mean the documented defaults.
type Options struct {
	// Store is the shared record of session owners (NewRedisStore).
	Store Store
	// Self is this node's base URL as the other nodes reach it
	// ("http://10.0.0.5:8081").
	Self string
	// Secret authenticates requests between nodes (HMAC-SHA256 of the
	// method, URL, client address, body, a timestamp and a nonce); every
	// node uses the same.
	Secret []byte
	// KeepInterval is how often owned records are refreshed and those
	// of ended sessions released. The store's TTL must be several times
	// longer. Default 10s.
	KeepInterval time.Duration
	// CheckInterval is how often the store's Generation is read: how
	// soon after the store comes back from a restart or an outage this
	// node puts its records back and closes copies another node owns.
	// It must be well inside the store's recovery grace. Default 500ms.
	CheckInterval time.Duration
	// ForwardTimeout bounds how long the owner of a session may take to
	// begin answering a forwarded request, beyond the time a poll may
	// wait there for data. Past it the client gets 504 and the session
	// stays with its owner: a slow owner is not a gone one (see
	// docs/cluster.md). Default 10s.
	ForwardTimeout time.Duration
	// MaxSkew bounds the age of a forwarded request's signature (and
	// the clock difference between nodes). Default 30s.
	MaxSkew time.Duration
	// MaxNonces bounds how many forwarded requests' nonces a node
	// remembers, each until its signature is older than MaxSkew: a
	// request whose nonce was seen is refused as a replay (403). Past
	// the bound a forwarded request is refused (503) rather than the
	// memory grown. Default DefaultMaxNonces (about 10 MB at most;
	// enough for 8,000 forwarded requests a second with the default
	// MaxSkew).
	MaxNonces int
	// OwnerCacheTTL is how long a node remembers another node's session
	// owner before asking the store again. Default 5s.
	OwnerCacheTTL time.Duration
	// StoreWait bounds how long a request for a session this node does
	// not hold waits for the store to place it: during the store's
	// recovery grace, and while it is unreachable (an outage, a restart,
	// a failover). The store is asked again every CheckInterval. Past
	// StoreWait (plus the last call's StoreTimeout) the request gets 503
	// "Session owner store unavailable": without the store this node
	// cannot know whether another node serves the id, and serving it
	// here could make two copies. Default 10s.
	StoreWait time.Duration
	// StoreTimeout bounds one store call on the request path, and each
	// of Leave's two waits: for the keep loop to return, then for the
	// release of the member's records (see Leave). Default 2s.
	StoreTimeout time.Duration
	// Transport carries forwarded requests. Default: keep-alive
	// connections (up to 256 idle per owner, for 90s), a 2s dial timeout,
	// no proxy from the environment; each request written and its answer
	// read by the goroutine that forwards it (client.go).
	Transport http.RoundTripper
	// HandOffTTL is how long a session handed off by a draining node
	// waits in the store for its next request, which resumes it on the
	// node that request reaches (see handoff.go). Default 30s.
	HandOffTTL time.Duration
	// Observer receives forwarded-request events. Default: none.
	Observer Observer
	// Logger receives what goes wrong between nodes, at most one line
	// every 10 s for store failures. Default slog.Default().
	Logger *slog.Logger
}

// ForwardHeader carries a forwarded request's signature: "<unix
// seconds>:<hex nonce>:<body length or ->:<hex HMAC>". RemoteHeader
// carries the client's address as the forwarding node saw it (covered by
// the signature). BodyTrailer, a trailer after a forwarded body, carries
// the HMAC of the nonce and the body's SHA-256. docs/cluster.md has the
// format.
const (
	ForwardHeader = "X-Sockjsd-Forward"
	RemoteHeader  = "X-Sockjsd-Remote"
	BodyTrailer   = "X-Sockjsd-Body"
	// OwnerHeader comes with a 421 answer to a forwarded request: the
	// node it reached does not own the session, the store names this
	// owner instead, and the forwarding node tries there.
	OwnerHeader = "X-Sockjsd-Owner"
)

// CodeOwnerConflict closes a node's copy of a session when the store says
// another node owns the session id: an owner frozen for longer than its
// records' TTL finds, when it resumes, that another node took the id over.
// Its client then sees this clean close rather than two sessions
// answering in turn.
const (
	CodeOwnerConflict   = 3012
	ReasonOwnerConflict = "Session owned by another node"
)

// Defaults of Options.
const (
	DefaultKeepInterval   = 10 * time.Second
	DefaultCheckInterval  = 500 * time.Millisecond
	DefaultForwardTimeout = 10 * time.Second
	DefaultMaxSkew        = 30 * time.Second
	DefaultStoreTimeout   = 2 * time.Second
	DefaultOwnerCacheTTL  = 5 * time.Second
	DefaultMaxNonces      = 1 << 18
	DefaultStoreWait      = 10 * time.Second
	// forwardTries bounds the owners one request is tried at: an owner
	// gone or moved is followed at most this many times.
	forwardTries = 3
)

// New returns a Node, or an error naming what in opts cannot work.
func New(o Options) (*Node, error) {
	if o.Store == nil {
		return nil, errors.New("cluster: no Store")
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("cluster: no secret")
	}
	u, err := url.Parse(o.Self)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cluster: self URL %q is not an http(s) base URL", o.Self)
	}
	if o.KeepInterval <= 0 {
		o.KeepInterval = DefaultKeepInterval
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.ForwardTimeout <= 0 {
		o.ForwardTimeout = DefaultForwardTimeout
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = DefaultMaxSkew
	}
	if o.MaxNonces <= 0 {
		o.MaxNonces = DefaultMaxNonces
	}
	if o.OwnerCacheTTL <= 0 {
		o.OwnerCacheTTL = DefaultOwnerCacheTTL
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = DefaultStoreTimeout
	}
	if o.StoreWait <= 0 {
		o.StoreWait = DefaultStoreWait
	}
	if o.HandOffTTL <= 0 {
		o.HandOffTTL = DefaultHandOffTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Self = strings.TrimSuffix(o.Self, "/")
	if o.Transport == nil {
		o.Transport = newPeerTransport()
	}
	n := &Node{opts: o, obs: o.Observer, log: o.Logger, members: map[*member]struct{}{},
		cache: ownerCache{ttl: o.OwnerCacheTTL, m: make(map[string]cachedOwner)}, nonces: nonceCache{max: o.MaxNonces}}
	if n.obs == nil {
		n.obs = nopObserver{}
	}
	n.proxy = &httputil.ReverseProxy{
		Rewrite:   n.rewrite,
		Transport: o.Transport,
		// Streaming responses (no Content-Length: xhr_streaming,
		// htmlfile; eventsource) are flushed as each frame comes:
		// ReverseProxy does so by itself for them. A response of known
		// length (a poll's, a send's) goes out whole when it ends: with
		// -1 here each one also had its headers flushed on their own,
		// from a timer's goroutine, a write more per forwarded request.
		FlushInterval:  0,
		ErrorHandler:   n.proxyError,
		ModifyResponse: n.gotResponse,
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		BufferPool:     copyBuffers{},
	}
	return n, nil
}

type nopObserver struct{}

func (nopObserver) Forwarded(string, string, time.Duration) {}
func (nopObserver) StoreWaiting(int)                        {}
func (nopObserver) StoreUnavailable(string)                 {}

// Join implements transport.Cluster. The node's keep loop runs while it
// has members: from the first Join to the last Leave.
func (n *Node) Join(svc transport.ClusterService) transport.ClusterMember {
	m := &member{n: n, svc: svc, prefix: svc.Prefix(), owned: map[string]*session.Session{}, resuming: map[string]chan struct{}{}}
	n.mu.Lock()
	n.members[m] = struct{}{}
	if len(n.members) == 1 {
		n.stop, n.done = make(chan struct{}), make(chan struct{})
		var life context.Context
		life, n.cancel = context.WithCancel(context.Background())
		go n.keepLoop(life, n.stop, n.done)
	}
	n.mu.Unlock()
	return m
}

// receiving endpoints create a session for an unknown id; sending ones
// answer 404.
func receiving(endpoint string) bool {
	return endpoint != "xhr_send" && endpoint != "jsonp_send"
}

// polling endpoints are answered by the owner only when it has data or a
// heartbeat is due.
func polling(endpoint string) bool { return endpoint == "xhr" || endpoint == "jsonp" }

// forwardable: the method each endpoint serves. Anything else (preflights,
// wrong methods) is answered here, the same on every node.
func forwardable(endpoint, method string) bool {
	switch endpoint {
	case "eventsource", "htmlfile", "jsonp":
		return method == http.MethodGet
	default:
		return method == http.MethodPost
	}
}

func (m *member) key(sid string) string { return m.prefix + "/" + sid }

// Route implements transport.ClusterMember.
func (m *member) Route(w http.ResponseWriter, r *http.Request, sid, endpoint string) bool {
	if m.route(w, r, sid, endpoint) {
		return true
	}
	// Served here: first let a resume of the session by another request
	// of this node end. That request took the hand-off record, so the
	// store names this node already; this one, which found the store so
	// (a claim, or an owner lookup) before the session was in the
	// registry, would otherwise open a new session under the id (a
	// second open frame, a second backend connect) or answer a send 404.
	return !m.resumingHere(r, sid)
}

// route is Route without the wait for a resume in progress here.
func (m *member) route(w http.ResponseWriter, r *http.Request, sid, endpoint string) bool {
	if sig := r.Header.Get(ForwardHeader); sig != "" {
		return m.forwarded(w, r, sig, sid, endpoint)
	}
	if !forwardable(endpoint, r.Method) {
		return false
	}
	if !m.resumingHere(r, sid) {
		return true // the client left
	}
	if m.svc.Session(sid) != nil {
		if !m.svc.HandedOff(sid) {
			return false
		}
		// Handed off from here: the stub tells a receiver to ask again;
		// a send goes to the node that takes the session.
		if !receiving(endpoint) {
			m.Redirect(w, r, sid, endpoint)
			return true
		}
		return false
	}
	n, key := m.n, m.key(sid)
	// A node shutting down still forwards to live owners (the balancer
	// may send it requests until it notices) but takes no new sessions.
	closing := !m.svc.Accepting()
	owner, cached := n.cache.get(key)
	if !cached {
		var err error
		owner, err = n.settled(r.Context(), func(ctx context.Context) (string, error) {
			return n.opts.Store.Owner(ctx, key)
		})
		if err != nil {
			m.unavailable(w, r, endpoint, "owner lookup failed", err)
			return true
		}
	}
	if (owner == "" || owner == n.opts.Self) && receiving(endpoint) && !closing {
		var err error
		if owner, err = m.claim(r.Context(), sid, ""); err != nil {
			m.unavailable(w, r, endpoint, "owner claim failed", err)
			return true
		}
	}
	for range forwardTries {
		if owner == HandOffOwner {
			// A drained node handed the session off: resume it here.
			if closing {
				if !receiving(endpoint) {
					m.Redirect(w, r, sid, endpoint)
					return true
				}
				plainError(w, http.StatusServiceUnavailable, "Server is shutting down")
				return true
			}
			n.cache.drop(key)
			if owner = m.take(w, r, sid); owner == "" {
				return true // answered
			}
			cached = false
		}
		if owner == "" || owner == n.opts.Self {
			return false
		}
		if !cached {
			// Entries expire OwnerCacheTTL after the lookup, however
			// often they are used.
			n.cache.put(key, owner)
		}
		res := m.forward(w, r, owner, endpoint)
		switch {
		case res.answered:
			return true
		case res.moved != "":
			// The node we reached does not own the session: the
			// store names another owner there, which we follow.
			n.cache.drop(key)
			owner, cached = res.moved, false
			continue
		}
		// Nothing listens at the owner's address: its sessions are
		// unknown ids now. A receive takes the session over, unless
		// another node did so first; that one gets the request then.
		n.cache.drop(key)
		if !receiving(endpoint) && !closing {
			// The owner may have handed the session off before it
			// went (a cached owner): the store knows.
			gone := owner
			var err error
			owner, err = n.settled(r.Context(), func(ctx context.Context) (string, error) {
				return n.opts.Store.Owner(ctx, key)
			})
			if err != nil {
				m.unavailable(w, r, endpoint, "owner lookup failed", err)
				return true
			}
			if owner == gone {
				return false
			}
			cached = false
			continue
		}
		if !receiving(endpoint) || closing {
			return false
		}
		var err error
		if owner, err = m.claim(r.Context(), sid, owner); err != nil {
			m.unavailable(w, r, endpoint, "owner claim failed", err)
			return true
		}
		cached = false
	}
	// Owners that kept moving or vanishing: answer rather than serve a
	// session another node may hold.
	plainError(w, http.StatusBadGateway, "Session owner unavailable")
	return true
}

// forwarded handles a request another node forwarded here: it is served
// here, not forwarded again, so that two nodes that disagree about the
// owner cannot loop (a send for a session this node does not have follows
// the store's owner once: strayForwardedSend). A receive for an unknown id claims it
// first; when the store names another owner, the answer is 421 with that
// owner, for the forwarding node to try there.
func (m *member) forwarded(w http.ResponseWriter, r *http.Request, sig, sid, endpoint string) bool {
	fs, err := m.n.verify(r, sig, time.Now())
	if err != nil {
		m.svc.Logger().Warn("sockjs: forwarded request refused", "prefix", m.prefix, "remote", r.RemoteAddr, "err", err)
		if errors.Is(err, errNoncesFull) {
			plainError(w, http.StatusServiceUnavailable, "Too many forwarded requests")
		} else {
			plainError(w, http.StatusForbidden, "Bad cluster signature")
		}
		return true
	}
	// The client's address as the first node saw it: the session sees
	// the same request whichever node the client reached first.
	if r.URL.Query().Has(releaseParam) {
		m.released(w, sid) // relay.go
		return true
	}
	r.RemoteAddr = r.Header.Get(RemoteHeader)
	r.Header.Del(ForwardHeader)
	r.Header.Del(RemoteHeader)
	if fs.length == 0 {
		// Signed empty: whatever came is not read.
		r.Body, r.ContentLength = http.NoBody, 0
	} else {
		// The body as the client sent it (its length as signed); its
		// end only once it matches the trailer's MAC.
		from := r.RemoteAddr
		r.Body = &verifiedBody{body: r.Body, sum: sha256.New(), trailer: r.Trailer, left: fs.length, n: m.n, nonce: fs.nonce,
			refused: func(err error) {
				m.svc.Logger().Warn("sockjs: forwarded request refused", "prefix", m.prefix, "client", from, "err", err)
			}}
		r.ContentLength = fs.length
	}
	if m.svc.Session(sid) != nil && m.svc.HandedOff(sid) {
		m.movedTo(w, r, sid, endpoint) // handoff.go
		return true
	}
	if !receiving(endpoint) && m.svc.Session(sid) == nil && m.strayForwardedSend(w, r, sid, endpoint) {
		return true // handoff.go
	}
	if !receiving(endpoint) || m.svc.Session(sid) != nil || !m.svc.Accepting() {
		return false
	}
	owner, err := m.claim(r.Context(), sid, "")
	if err != nil {
		m.unavailable(w, r, endpoint, "owner claim failed", err)
		return true
	}
	if owner != m.n.opts.Self {
		w.Header().Set(OwnerHeader, owner)
		plainError(w, http.StatusMisdirectedRequest, "Session owned by another node")
		return true
	}
	return false
}

// Opened implements transport.ClusterMember: the session's record is kept
// alive while it lives and released when it ends.
func (m *member) Opened(sid string, s *session.Session) {
	m.mu.Lock()
	m.owned[sid] = s
	m.mu.Unlock()
}

// settled runs a store call on the request path, waiting for the store to
// answer: through its recovery grace, when a key without an owner may
// belong to a live session whose owner has not put its record back yet,
// and through an outage, when nothing tells whether another node serves
// the id. Either way, serving the id here could make a second copy of a
// session. Each try is bounded by StoreTimeout; tries repeat every
// CheckInterval (sooner when the grace ends sooner) for at most
// StoreWait, then the last error is returned.
func (n *Node) settled(ctx context.Context, call func(context.Context) (string, error)) (string, error) {
	deadline := time.Now().Add(n.opts.StoreWait)
	waiting := false
	defer func() {
		if waiting {
			n.obs.StoreWaiting(-1)
		}
	}()
	for {
		sctx, cancel := context.WithTimeout(ctx, n.opts.StoreTimeout)
		v, err := call(sctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		wait := n.opts.CheckInterval
		var re *RecoveringError
		if errors.As(err, &re) && re.Left > 0 && re.Left < wait {
			wait = re.Left
		}
		if left := time.Until(deadline); left <= 0 {
			return "", err
		} else if wait > left {
			wait = left
		}
		if !waiting {
			waiting = true
			n.obs.StoreWaiting(1)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// claim records this node as sid's owner (or, with stale, takes it over
// from that gone owner) and returns the owner after the call; an error
// when the store did not answer within StoreWait.
func (m *member) claim(ctx context.Context, sid, stale string) (string, error) {
	n := m.n
	return n.settled(ctx, func(ctx context.Context) (string, error) {
		return n.opts.Store.Claim(ctx, m.key(sid), n.opts.Self, stale)
	})
}

// unavailable answers a request the store could not place within
// StoreWait: 503, rather than a session served here alone, which would be
// a second copy whenever another node serves the id. sockjs-client closes
// its session on it (1006); a new session's client tries its next
// transport. Websocket sessions never need the store.
func (m *member) unavailable(w http.ResponseWriter, r *http.Request, endpoint, what string, err error) {
	if r.Context().Err() != nil {
		return // the client left while the request waited
	}
	m.warn(what, err)
	m.n.obs.StoreUnavailable(endpoint)
	plainError(w, http.StatusServiceUnavailable, "Session owner store unavailable")
}

// plainError answers status with a short text body, as transport does.
func plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// ownerCache remembers where sessions of other nodes live for a few
// seconds, sparing the store a lookup on most forwarded requests. A stale
// entry costs little: an owner that is gone refuses the connection and
// the entry is dropped; an owner that no longer holds the session answers
// 421 with the store's owner, or as for an unknown id, as the store would
// have made this node do.
type ownerCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]cachedOwner
}

type cachedOwner struct {
	owner   string
	expires time.Time
}

// maxCachedOwners bounds the cache's memory (about 100 bytes an entry).
const maxCachedOwners = 1 << 16

func (oc *ownerCache) get(sid string) (string, bool) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	e, ok := oc.m[sid]
	if !ok || time.Now().After(e.expires) {
		return "", false
	}
	return e.owner, true
}

func (oc *ownerCache) put(sid, owner string) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if len(oc.m) >= maxCachedOwners {
		now := time.Now()
		for k, e := range oc.m {
			if now.After(e.expires) {
				delete(oc.m, k)
			}
		}
		if len(oc.m) >= maxCachedOwners {
			clear(oc.m)
		}
	}
	oc.m[sid] = cachedOwner{owner, time.Now().Add(oc.ttl)}
}

func (oc *ownerCache) drop(sid string) {
	oc.mu.Lock()
	delete(oc.m, sid)
	oc.mu.Unlock()
}
