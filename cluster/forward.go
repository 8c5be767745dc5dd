package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	hexenc "encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type forwardKey struct{}

// forwardState travels with one forwarded request through the proxy's
// callbacks.
type forwardState struct {
	m        *member
	owner    *url.URL
	client   context.Context // the client's request: done when it left
	start    time.Time
	headers  time.Duration
	deadline *time.Timer // cancels the request until the owner's headers come
	timedOut atomic.Bool
	gone     error  // nothing listens at the owner's address; nothing was written
	moved    string // the owner answered 421 naming another; nothing was written
	timeout  error  // the owner was too slow; the client got 504
	otherErr error
}

// forwardResult is what forward did: answered the client, or wrote
// nothing because the owner is gone or named another owner (moved).
type forwardResult struct {
	answered bool
	moved    string
}

// errMoved is ModifyResponse's way of handing a 421 back to forward
// before anything reaches the client.
var errMoved = errors.New("session owner moved")

// forward proxies r to owner. The owner must begin its answer within
// ForwardTimeout (plus pollWait for polls); a slow owner gets the client a
// 504 and keeps its session, since an owner that is merely slow would
// otherwise lose a live session to a second copy.
func (m *member) forward(w http.ResponseWriter, r *http.Request, owner, endpoint string) forwardResult {
	n := m.n
	u, err := url.Parse(owner)
	if err != nil || u.Host == "" {
		m.warn("owner is not a URL", fmt.Errorf("%q: %v", owner, err))
		return forwardResult{}
	}
	timeout := n.opts.ForwardTimeout
	if polling(endpoint) {
		timeout += m.svc.PollWait()
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st := &forwardState{m: m, owner: u, client: r.Context(), start: time.Now()}
	st.deadline = time.AfterFunc(timeout, func() { st.timedOut.Store(true); cancel() })
	defer st.deadline.Stop()
	result := "error"
	defer func() {
		// ReverseProxy aborts the handler with http.ErrAbortHandler
		// when the owner's response breaks off: count it, then let
		// net/http cut the client's connection as one node would.
		if result == "error" && r.Context().Err() != nil {
			result = "client_gone"
		}
		n.obs.Forwarded(endpoint, result, st.headers)
	}()
	n.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, forwardKey{}, st)))
	switch {
	case st.gone != nil:
		result = "owner_gone"
		m.svc.Logger().Debug("sockjs: session owner unreachable", "prefix", m.prefix, "owner", owner, "err", st.gone)
		return forwardResult{}
	case st.moved != "":
		result = "moved"
		return forwardResult{moved: st.moved}
	case st.timeout != nil:
		result = "timeout"
	case st.otherErr != nil:
		result = "error"
	default:
		result = "ok"
	}
	return forwardResult{answered: true}
}

// forwardedHeaders are the balancer's view of the client. They reach the
// owner as the first node received them: ReverseProxy's Rewrite drops
// them, and SetXForwarded would rewrite them with this node's view.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

func (n *Node) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(forwardKey{}).(*forwardState)
	pr.SetURL(st.owner)
	pr.Out.Host = pr.In.Host // the application sees the Host the client used
	for _, k := range forwardedHeaders {
		if v, ok := pr.In.Header[k]; ok {
			pr.Out.Header[k] = slices.Clone(v)
		}
	}
	remote := pr.In.RemoteAddr
	pr.Out.Header.Set(RemoteHeader, remote)
	pr.Out.Header.Set(ForwardHeader, n.sign(pr.Out.Method, pr.Out.URL.RequestURI(), remote, time.Now()))
}

func (n *Node) gotResponse(resp *http.Response) error {
	st, ok := resp.Request.Context().Value(forwardKey{}).(*forwardState)
	if !ok {
		return nil
	}
	st.headers = time.Since(st.start)
	if !st.deadline.Stop() && st.timedOut.Load() {
		return context.DeadlineExceeded
	}
	if resp.StatusCode == http.StatusMisdirectedRequest {
		if o := resp.Header.Get(OwnerHeader); o != "" {
			st.moved = o
			return errMoved
		}
	}
	return nil
}

// ownerGone tells a dead owner from a slow one by how the connection
// failed: refused (nothing listens at the address: the process is gone)
// or a name that no longer resolves. A dial that times out (a SYN backlog
// under load, a paused process) is a slow owner.
func ownerGone(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	var dns *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &dns) && dns.IsNotFound)
}

func (n *Node) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(forwardKey{}).(*forwardState)
	if st.headers == 0 {
		st.headers = time.Since(st.start)
	}
	switch {
	case errors.Is(err, errMoved):
		return // nothing written: forward follows st.moved
	case ownerGone(err):
		st.gone = err // nothing written: the caller serves it here
		return
	case st.client.Err() != nil:
		st.otherErr = err
		return // the client left; nobody reads an answer
	case st.timedOut.Load() || isTimeout(err):
		st.timeout = err
		st.m.svc.Logger().Warn("sockjs: session owner did not answer in time", "prefix", st.m.prefix, "owner", st.owner.Host, "err", err)
		plainError(w, http.StatusGatewayTimeout, "Session owner did not answer in time")
		return
	}
	st.otherErr = err
	st.m.svc.Logger().Warn("sockjs: forwarding to session owner failed", "prefix", st.m.prefix, "owner", st.owner.Host, "err", err)
	plainError(w, http.StatusBadGateway, "Session owner unavailable")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// sign returns the ForwardHeader value for a request.
func (n *Node) sign(method, requestURI, remote string, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return ts + ":" + hexenc.EncodeToString(n.mac(ts, method, requestURI, remote))
}

func (n *Node) mac(ts, method, requestURI, remote string) []byte {
	m := hmac.New(sha256.New, n.opts.Secret)
	m.Write([]byte("sockjsd-forward\n" + ts + "\n" + method + "\n" + requestURI + "\n" + remote))
	return m.Sum(nil)
}

func (n *Node) verify(r *http.Request, sig string) error {
	ts, hexMAC, ok := strings.Cut(sig, ":")
	if !ok {
		return errors.New("malformed signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("malformed signature time")
	}
	if d := time.Since(time.Unix(sec, 0)); d > n.opts.MaxSkew || d < -n.opts.MaxSkew {
		return fmt.Errorf("signature time %s off by %s", time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	got, err := hexenc.DecodeString(hexMAC)
	if err != nil || !hmac.Equal(got, n.mac(ts, r.Method, r.URL.RequestURI(), r.Header.Get(RemoteHeader))) {
		return errors.New("signature mismatch")
	}
	return nil
}
