package transport

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	hexenc "encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
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
// signed with the cluster secret. Websocket sessions live and die with
// their one connection, so they never need forwarding.

// Owners records which node owns each session. Keys are "<prefix>/<session
// id>"; nodes are the base URLs other nodes reach them at. cluster.Owners
// implements it on Redis; any store with an atomic compare-and-set and
// expiring keys can.
type Owners interface {
	// Owner returns the node owning key, or "" when there is none.
	Owner(ctx context.Context, key string) (string, error)
	// Claim makes node the owner of key if key has no owner, is owned by
	// node already, or (when stale is not "") is owned by stale. It
	// returns the owner after the call: node on success.
	Claim(ctx context.Context, key, node, stale string) (string, error)
	// Keep extends the life of the keys node owns (and restores those
	// the store lost, for example after a restart).
	Keep(ctx context.Context, keys []string, node string) error
	// Release deletes the keys that node still owns.
	Release(ctx context.Context, keys []string, node string) error
}

// ForwardObserver is told about every forwarded request. endpoint is one
// of the seven HTTP session endpoints; result is "ok" (the owner
// answered), "owner_gone" (it could not be reached, the request was served
// here as for an unknown session), "client_gone" (the client left first,
// as streaming clients do) or "error" (the owner failed after being
// reached; the client got 502 or a cut response). d is the time until the
// owner's response headers arrived.
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
	// method, URL and a timestamp). Required; every node uses the same.
	Secret []byte
	// KeepInterval is how often owned keys are refreshed and those of
	// ended sessions released. The store's TTL must be several times
	// longer. Default 10s.
	KeepInterval time.Duration
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
// seconds>:<hex HMAC>".
const ForwardHeader = "X-Sockjsd-Forward"

const (
	defaultKeepInterval  = 10 * time.Second
	defaultMaxSkew       = 30 * time.Second
	defaultStoreTimeout  = 2 * time.Second
	defaultOwnerCacheTTL = 5 * time.Second
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

	mu      sync.Mutex
	owned   map[string]*session.Session // URL session id -> the session we own under it
	started bool
	stop    chan struct{}
	done    chan struct{}
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
		o.KeepInterval = defaultKeepInterval
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
		cache: ownerCache{ttl: o.OwnerCacheTTL, m: make(map[string]cachedOwner)}}
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
	return c
}

// receiving endpoints create a session for an unknown id; sending ones
// answer 404.
func receiving(endpoint string) bool {
	return endpoint != "xhr_send" && endpoint != "jsonp_send"
}

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
		if err := c.verify(r, sig); err != nil {
			c.h.log.Warn("sockjs: forwarded request refused", "prefix", c.h.prefix, "remote", r.RemoteAddr, "err", err)
			plainError(w, http.StatusForbidden, "Bad cluster signature")
			return true
		}
		// A forwarded request is always served here, never forwarded
		// again, so two nodes that disagree about the owner cannot loop.
		r.Header.Del(ForwardHeader)
		if ip := lastForwardedFor(r); ip != "" {
			r.RemoteAddr = net.JoinHostPort(ip, "0")
		}
		if receiving(endpoint) && c.h.reg.Get(sid) == nil && !c.h.closing.Load() {
			c.claim(r.Context(), sid, "")
		}
		return false
	}
	if !forwardable(endpoint, r.Method) || c.h.reg.Get(sid) != nil {
		return false
	}
	// A node shutting down still forwards to live owners (the balancer
	// may send it requests until it notices) but takes no new sessions.
	closing := c.h.closing.Load()
	owner, cached := c.cache.get(sid)
	if !cached {
		ctx, cancel := context.WithTimeout(r.Context(), c.opts.StoreTimeout)
		var err error
		owner, err = c.opts.Owners.Owner(ctx, c.key(sid))
		cancel()
		if err != nil {
			// Without the store this node can only act alone: a send
			// gets 404, a receive starts a session here.
			c.warn("owner lookup failed", err)
			return false
		}
	}
	if (owner == "" || owner == c.opts.Self) && receiving(endpoint) && !closing {
		owner = c.claim(r.Context(), sid, "")
	}
	// Two tries: when the owner is gone, a receive takes the session over,
	// unless another node did so first; that one gets the request then.
	for range 2 {
		if owner == "" || owner == c.opts.Self {
			return false
		}
		if !cached {
			// Entries expire OwnerCacheTTL after the lookup, however
			// often they are used.
			c.cache.put(sid, owner)
		}
		if c.forward(w, r, owner, endpoint) {
			return true
		}
		c.cache.drop(sid)
		if !receiving(endpoint) || closing {
			return false // the owner is gone: its sessions are unknown ids now
		}
		owner, cached = c.claim(r.Context(), sid, owner), false
	}
	return false
}

// ownerCache remembers where sessions of other nodes live for a few
// seconds, sparing the store a lookup on most forwarded requests. A stale
// entry costs little: an owner that is gone fails the dial and the entry
// is dropped; an owner whose session ended answers as for an unknown id,
// as the store would have made this node do.
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

// claim records this node as sid's owner and returns the owner after the
// call ("" if the store failed: the session is then served here alone).
func (c *cluster) claim(ctx context.Context, sid, stale string) string {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	owner, err := c.opts.Owners.Claim(ctx, c.key(sid), c.opts.Self, stale)
	if err != nil {
		c.warn("owner claim failed", err)
		return ""
	}
	return owner
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

type forwardKey struct{}

// forwardState travels with one forwarded request through the proxy's
// callbacks.
type forwardState struct {
	owner    *url.URL
	start    time.Time
	headers  time.Duration
	dialErr  error
	otherErr error
}

// forward proxies r to owner. It returns false, having written nothing,
// when owner cannot be reached.
func (c *cluster) forward(w http.ResponseWriter, r *http.Request, owner, endpoint string) bool {
	u, err := url.Parse(owner)
	if err != nil || u.Host == "" {
		c.warn("owner is not a URL", fmt.Errorf("%q: %v", owner, err))
		return false
	}
	st := &forwardState{owner: u, start: time.Now()}
	result := "error"
	defer func() {
		// ReverseProxy aborts the handler with http.ErrAbortHandler
		// when the owner's response breaks off: count it, then let
		// net/http cut the client's connection as one node would.
		if result != "ok" && result != "owner_gone" && r.Context().Err() != nil {
			result = "client_gone"
		}
		c.obs.Forwarded(endpoint, result, st.headers)
	}()
	c.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, st)))
	switch {
	case st.dialErr != nil:
		result = "owner_gone"
		c.h.log.Debug("sockjs: session owner unreachable", "prefix", c.h.prefix, "owner", owner, "err", st.dialErr)
		return false
	case st.otherErr != nil:
		result = "error"
	default:
		result = "ok"
	}
	return true
}

func (c *cluster) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(forwardKey{}).(*forwardState)
	pr.SetURL(st.owner)
	pr.Out.Host = pr.In.Host // the application sees the Host the client used
	// Keep the chain the balancer started; SetXForwarded appends the
	// address this node saw.
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
		pr.Out.Header["X-Forwarded-For"] = append([]string(nil), prior...)
	}
	pr.SetXForwarded()
	pr.Out.Header.Set(ForwardHeader, c.sign(pr.Out.Method, pr.Out.URL.RequestURI(), time.Now()))
}

func (c *cluster) gotResponse(resp *http.Response) error {
	if st, ok := resp.Request.Context().Value(forwardKey{}).(*forwardState); ok {
		st.headers = time.Since(st.start)
	}
	return nil
}

func (c *cluster) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(forwardKey{}).(*forwardState)
	st.headers = time.Since(st.start)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		st.dialErr = err // nothing was written: the caller serves it here
		return
	}
	st.otherErr = err
	if r.Context().Err() != nil {
		return // the client left; nobody reads an answer
	}
	c.h.log.Warn("sockjs: forwarding to session owner failed", "prefix", c.h.prefix, "owner", st.owner.Host, "err", err)
	plainError(w, http.StatusBadGateway, "Session owner unavailable")
}

// sign returns the ForwardHeader value for a request.
func (c *cluster) sign(method, requestURI string, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return ts + ":" + hexenc.EncodeToString(c.mac(ts, method, requestURI))
}

func (c *cluster) mac(ts, method, requestURI string) []byte {
	m := hmac.New(sha256.New, c.opts.Secret)
	m.Write([]byte("sockjsd-forward\n" + ts + "\n" + method + "\n" + requestURI))
	return m.Sum(nil)
}

func (c *cluster) verify(r *http.Request, sig string) error {
	ts, hexMAC, ok := strings.Cut(sig, ":")
	if !ok {
		return errors.New("malformed signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("malformed signature time")
	}
	if d := time.Since(time.Unix(sec, 0)); d > c.opts.MaxSkew || d < -c.opts.MaxSkew {
		return fmt.Errorf("signature time %s off by %s", time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	got, err := hexenc.DecodeString(hexMAC)
	if err != nil || !hmac.Equal(got, c.mac(ts, r.Method, r.URL.RequestURI())) {
		return errors.New("signature mismatch")
	}
	return nil
}

// lastForwardedFor is the address the forwarding node saw: the last entry
// of X-Forwarded-For, which that node appended itself.
func lastForwardedFor(r *http.Request) string {
	v := r.Header.Values("X-Forwarded-For")
	if len(v) == 0 {
		return ""
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	last = strings.TrimSpace(last)
	if net.ParseIP(last) == nil {
		return ""
	}
	return last
}

// track remembers a session this node created, so that its key is kept
// alive while it lives and released when it ends.
func (c *cluster) track(sid string, s *session.Session) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.owned[sid] = s
	if !c.started {
		c.started = true
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.keepLoop(c.stop, c.done)
	}
	c.mu.Unlock()
}

// keepLoop refreshes owned keys and releases those of ended sessions. One
// goroutine per service, not per session.
func (c *cluster) keepLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(c.opts.KeepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.sweep()
		}
	}
}

// sweep runs once per KeepInterval.
func (c *cluster) sweep() {
	var keep, release []string
	c.mu.Lock()
	for sid, s := range c.owned {
		if c.h.reg.Get(sid) == s {
			keep = append(keep, c.key(sid))
		} else {
			release = append(release, c.key(sid))
			delete(c.owned, sid)
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.KeepInterval)
	defer cancel()
	if err := c.opts.Owners.Keep(ctx, keep, c.opts.Self); err != nil {
		c.warn("keeping owned sessions failed", err)
	}
	if err := c.opts.Owners.Release(ctx, release, c.opts.Self); err != nil {
		c.warn("releasing ended sessions failed", err)
	}
}

// shutdown stops the keep loop and releases every key this node holds.
func (c *cluster) shutdown() {
	if c == nil {
		return
	}
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.started, c.stop = false, nil
	keys := make([]string, 0, len(c.owned))
	for sid := range c.owned {
		keys = append(keys, c.key(sid))
	}
	clear(c.owned)
	c.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
	defer cancel()
	if err := c.opts.Owners.Release(ctx, keys, c.opts.Self); err != nil {
		c.warn("releasing sessions at shutdown failed", err)
	}
}
