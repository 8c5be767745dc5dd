package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// Cluster mode: several nodes serve one service behind a load balancer
// without sticky sessions. The node that creates an HTTP session records
// itself as the session's owner in a shared store; a request for the
// session that lands on another node is forwarded to the owner over HTTP,
// signed with the cluster secret (cluster_forward.go). The owner keeps its
// records alive and puts them back as soon as the store returns from a
// restart or an outage; a node that finds another owner recorded for a
// session it holds closes its copy (cluster_keep.go), so that once the
// store is reachable at most one node serves a session id. Websocket
// sessions live and die with their one connection, so they never need
// forwarding.

// Owners records which node owns each session. Keys are "<prefix>/<session
// id>"; nodes are the base URLs other nodes reach them at. cluster.Owners
// implements it on Redis; any store with an atomic compare-and-set,
// expiring keys and a way to tell that it lost its records can.
type Owners interface {
	// Owner returns the node owning key, or "" when there is none. While
	// the store is recovering from the loss of its records (see
	// ErrOwnersRecovering) a key without an owner is reported as that
	// error instead of "".
	Owner(ctx context.Context, key string) (string, error)
	// Claim makes node the owner of key if key has no owner, is owned by
	// node already, or (when stale is not "") is owned by stale. It
	// returns the owner after the call: node on success. While the store
	// is recovering it claims nothing and returns ErrOwnersRecovering.
	Claim(ctx context.Context, key, node, stale string) (string, error)
	// Keep extends the life of the keys node owns, restores those the
	// store lost (for example after a restart), and returns the keys
	// another node owns now: node must stop serving those.
	Keep(ctx context.Context, keys []string, node string) (lost []string, err error)
	// Release deletes the keys that node still owns.
	Release(ctx context.Context, keys []string, node string) error
	// Generation names the store's current set of records. It changes
	// when the store lost them (a restart without persistence), which
	// starts the store's recovery grace; every node then puts its
	// records back at once. Called every ClusterOptions.CheckInterval.
	Generation(ctx context.Context) (string, error)
}

// ErrOwnersRecovering is returned (possibly wrapped in a
// RecoveringError) by Owners.Owner and Owners.Claim during the store's
// recovery grace: the store lost its records recently and the owners are
// putting theirs back, so a key without an owner may still have one. A
// request waits for the grace to end rather than taking a live session
// from its owner.
var ErrOwnersRecovering = errors.New("session owner store is recovering its records")

// RecoveringError is ErrOwnersRecovering with the time left in the grace.
type RecoveringError struct{ Left time.Duration }

func (e *RecoveringError) Error() string {
	return fmt.Sprintf("%v (%s left)", ErrOwnersRecovering, e.Left.Round(time.Millisecond))
}

// Unwrap makes errors.Is(err, ErrOwnersRecovering) true.
func (e *RecoveringError) Unwrap() error { return ErrOwnersRecovering }

// CodeOwnerConflict closes a node's copy of a session when the store says
// another node owns the session id: two copies can only arise while the
// store was unreachable, and the client then sees this clean close rather
// than two sessions answering in turn.
const (
	CodeOwnerConflict   = 3012
	ReasonOwnerConflict = "Session owned by another node"
)

// ForwardObserver is told about every forwarded request. endpoint is one
// of the seven HTTP session endpoints; result is "ok" (the owner
// answered), "owner_gone" (nothing listens at the owner's address: the
// request was served here as for an unknown session), "timeout" (the
// owner was reached but did not begin its answer within ForwardTimeout,
// or the connection could not be set up in time: the client got 504),
// "client_gone" (the client left first, as streaming clients do) or
// "error" (the owner failed after being reached; the client got 502 or a
// cut response). d is the time until the owner's response headers
// arrived.
type ForwardObserver interface {
	Forwarded(endpoint, result string, d time.Duration)
}

// ClusterOptions turn on cluster mode when Owners is set.
type ClusterOptions struct {
	// Owners is the shared store of session owners. Nil: single node.
	Owners Owners
	// Self is this node's base URL as the other nodes reach it
	// ("http://10.0.0.5:8081"). Required.
	Self string
	// Secret authenticates requests between nodes (HMAC-SHA256 of the
	// method, URL, client address and a timestamp). Required; every node
	// uses the same.
	Secret []byte
	// KeepInterval is how often owned keys are refreshed and those of
	// ended sessions released. The store's TTL must be several times
	// longer. Default 10s.
	KeepInterval time.Duration
	// CheckInterval is how often the store's Generation is read: how
	// soon after the store comes back from a restart or an outage this
	// node puts its records back and closes copies another node owns.
	// It must be well inside the store's recovery grace. Default 500ms.
	CheckInterval time.Duration
	// ForwardTimeout bounds how long the owner of a session may take to
	// begin answering a forwarded request, beyond the heartbeat delay a
	// poll may wait there for data. Past it the client gets 504 and the
	// session stays with its owner: a slow owner is not a gone one (see
	// docs/cluster.md). Default 10s.
	ForwardTimeout time.Duration
	// MaxSkew bounds the age of a forwarded request's signature (and
	// the clock difference between nodes). Default 30s.
	MaxSkew time.Duration
	// OwnerCacheTTL is how long a node remembers another node's session
	// owner before asking the store again. Default 5s.
	OwnerCacheTTL time.Duration
	// StoreTimeout bounds one store call on the request path. Default 2s.
	StoreTimeout time.Duration
	// Transport carries forwarded requests. Default: keep-alive
	// connections, a 2s dial timeout, no proxy from the environment.
	Transport http.RoundTripper
	// Observer receives forwarded-request events. Default: none.
	Observer ForwardObserver
}

// ForwardHeader carries a forwarded request's signature: "<unix
// seconds>:<hex HMAC>". RemoteHeader carries the client's address as the
// forwarding node saw it (covered by the signature).
const (
	ForwardHeader = "X-Sockjsd-Forward"
	RemoteHeader  = "X-Sockjsd-Remote"
	// OwnerHeader comes with a 421 answer to a forwarded request: the
	// node it reached does not own the session, the store names this
	// owner instead, and the forwarding node tries there.
	OwnerHeader = "X-Sockjsd-Owner"
)

// Defaults of ClusterOptions.
const (
	DefaultKeepInterval   = 10 * time.Second
	DefaultCheckInterval  = 500 * time.Millisecond
	DefaultForwardTimeout = 10 * time.Second
	defaultMaxSkew        = 30 * time.Second
	defaultStoreTimeout   = 2 * time.Second
	defaultOwnerCacheTTL  = 5 * time.Second
	// maxRecoveryWait caps how long a request waits out the store's
	// recovery grace, whatever the store says is left.
	maxRecoveryWait = 10 * time.Second
	// forwardTries bounds the owners one request is tried at: an owner
	// gone or moved is followed at most this many times.
	forwardTries = 3
)

// validate reports a configuration that cannot work, for New's caller.
func (o ClusterOptions) validate() error {
	if o.Owners == nil {
		return nil
	}
	if len(o.Secret) == 0 {
		return errors.New("cluster mode needs a secret")
	}
	u, err := url.Parse(o.Self)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("cluster: self URL %q is not an http(s) base URL", o.Self)
	}
	return nil
}

type cluster struct {
	h        *Handler
	opts     ClusterOptions
	obs      ForwardObserver
	proxy    *httputil.ReverseProxy
	cache    ownerCache
	lastWarn atomic.Int64
	// pollWait is how long a poll may wait at its owner for data before
	// the owner answers anyway (a heartbeat): added to ForwardTimeout
	// for polling endpoints.
	pollWait time.Duration

	mu    sync.Mutex
	owned map[string]*session.Session // URL session id -> the session we own under it

	stop     chan struct{} // closed by shutdown: keepLoop returns
	stopOnce sync.Once
	done     chan struct{} // closed when keepLoop returned
}

type nopForwardObserver struct{}

func (nopForwardObserver) Forwarded(string, string, time.Duration) {}

// newCluster returns nil when cluster mode is off. It panics on options
// that validate rejects: New has no error result, and a node that silently
// ran alone would break every session landing elsewhere.
func newCluster(h *Handler, o ClusterOptions) *cluster {
	if o.Owners == nil {
		return nil
	}
	if err := o.validate(); err != nil {
		panic("sockjs: " + err.Error())
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
		o.MaxSkew = defaultMaxSkew
	}
	if o.OwnerCacheTTL <= 0 {
		o.OwnerCacheTTL = defaultOwnerCacheTTL
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = defaultStoreTimeout
	}
	o.Self = strings.TrimSuffix(o.Self, "/")
	if o.Transport == nil {
		o.Transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
	}
	c := &cluster{h: h, opts: o, obs: o.Observer, owned: make(map[string]*session.Session),
		cache:    ownerCache{ttl: o.OwnerCacheTTL, m: make(map[string]cachedOwner)},
		pollWait: h.opts.Session.HeartbeatDelay + h.opts.Session.ReceiverWait,
		stop:     make(chan struct{}), done: make(chan struct{})}
	if c.obs == nil {
		c.obs = nopForwardObserver{}
	}
	c.proxy = &httputil.ReverseProxy{
		Rewrite:        c.rewrite,
		Transport:      o.Transport,
		FlushInterval:  -1, // streaming frames reach the client as they come
		ErrorHandler:   c.proxyError,
		ModifyResponse: c.gotResponse,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	go c.keepLoop()
	return c
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

func (c *cluster) key(sid string) string { return c.h.prefix + "/" + sid }

// intercept runs before a session endpoint is served. It returns true when
// it answered the request (forwarded or refused), false when this node
// serves it.
func (c *cluster) intercept(w http.ResponseWriter, r *http.Request, sid, endpoint string) bool {
	if sig := r.Header.Get(ForwardHeader); sig != "" {
		return c.forwarded(w, r, sig, sid, endpoint)
	}
	if !forwardable(endpoint, r.Method) || c.h.reg.Get(sid) != nil {
		return false
	}
	// A node shutting down still forwards to live owners (the balancer
	// may send it requests until it notices) but takes no new sessions.
	closing := c.h.closing.Load()
	owner, cached := c.cache.get(sid)
	if !cached {
		var err error
		owner, err = c.settled(r.Context(), func(ctx context.Context) (string, error) {
			return c.opts.Owners.Owner(ctx, c.key(sid))
		})
		if err != nil {
			// Without the store this node can only act alone: a send
			// gets 404, a receive starts a session here. Once the
			// store is back the owners reconcile (cluster_keep.go).
			c.warn("owner lookup failed", err)
			return false
		}
	}
	if (owner == "" || owner == c.opts.Self) && receiving(endpoint) && !closing {
		owner = c.claim(r.Context(), sid, "")
	}
	for range forwardTries {
		if owner == "" || owner == c.opts.Self {
			return false
		}
		if !cached {
			// Entries expire OwnerCacheTTL after the lookup, however
			// often they are used.
			c.cache.put(sid, owner)
		}
		res := c.forward(w, r, owner, endpoint)
		switch {
		case res.answered:
			return true
		case res.moved != "":
			// The node we reached does not own the session: the
			// store names another owner there, which we follow.
			c.cache.drop(sid)
			owner, cached = res.moved, false
			continue
		}
		// Nothing listens at the owner's address: its sessions are
		// unknown ids now. A receive takes the session over, unless
		// another node did so first; that one gets the request then.
		c.cache.drop(sid)
		if !receiving(endpoint) || closing {
			return false
		}
		owner, cached = c.claim(r.Context(), sid, owner), false
	}
	// Owners that kept moving or vanishing: answer rather than serve a
	// session another node may hold.
	plainError(w, http.StatusBadGateway, "Session owner unavailable")
	return true
}

// forwarded handles a request another node forwarded here: it is always
// served here, never forwarded again, so that two nodes that disagree
// about the owner cannot loop. A receive for an unknown id claims it
// first; when the store names another owner, the answer is 421 with that
// owner, for the forwarding node to try there.
func (c *cluster) forwarded(w http.ResponseWriter, r *http.Request, sig, sid, endpoint string) bool {
	if err := c.verify(r, sig); err != nil {
		c.h.log.Warn("sockjs: forwarded request refused", "prefix", c.h.prefix, "remote", r.RemoteAddr, "err", err)
		plainError(w, http.StatusForbidden, "Bad cluster signature")
		return true
	}
	// The client's address as the first node saw it: the session sees
	// the same request whichever node the client reached first.
	r.RemoteAddr = r.Header.Get(RemoteHeader)
	r.Header.Del(ForwardHeader)
	r.Header.Del(RemoteHeader)
	if !receiving(endpoint) || c.h.reg.Get(sid) != nil || c.h.closing.Load() {
		return false
	}
	if owner := c.claim(r.Context(), sid, ""); owner != "" && owner != c.opts.Self {
		w.Header().Set(OwnerHeader, owner)
		plainError(w, http.StatusMisdirectedRequest, "Session owned by another node")
		return true
	}
	return false
}

// settled runs a store call, waiting out the store's recovery grace:
// during it a key without an owner may belong to a live session whose
// owner has not put its record back yet, and taking the id over would
// serve the session twice. Each try is bounded by StoreTimeout; tries
// repeat every CheckInterval until the store settles (at most
// maxRecoveryWait).
func (c *cluster) settled(ctx context.Context, call func(context.Context) (string, error)) (string, error) {
	deadline := time.Now().Add(maxRecoveryWait)
	for {
		sctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
		v, err := call(sctx)
		cancel()
		if !errors.Is(err, ErrOwnersRecovering) {
			return v, err
		}
		// Owners put their records back within a CheckInterval of
		// noticing: ask again after one, or when the grace ends.
		wait := c.opts.CheckInterval
		var re *RecoveringError
		if errors.As(err, &re) && re.Left > 0 && re.Left < wait {
			wait = re.Left
		}
		if left := time.Until(deadline); left <= 0 {
			return "", err
		} else if wait > left {
			wait = left
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

// claim records this node as sid's owner and returns the owner after the
// call ("" if the store failed: the session is then served here alone).
func (c *cluster) claim(ctx context.Context, sid, stale string) string {
	owner, err := c.settled(ctx, func(ctx context.Context) (string, error) {
		return c.opts.Owners.Claim(ctx, c.key(sid), c.opts.Self, stale)
	})
	if err != nil {
		c.warn("owner claim failed", err)
		return ""
	}
	return owner
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

// warn logs store failures at most once every 10 seconds: when the store
// is down every request would log otherwise. /readyz shows the outage.
func (c *cluster) warn(msg string, err error) {
	now := time.Now().UnixNano()
	last := c.lastWarn.Load()
	if now-last < int64(10*time.Second) || !c.lastWarn.CompareAndSwap(last, now) {
		return
	}
	c.h.log.Warn("sockjs: cluster: "+msg, "prefix", c.h.prefix, "err", err)
}
