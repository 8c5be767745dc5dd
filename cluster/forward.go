package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	hexenc "encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type forwardKey struct{}

// retriedKey marks a forwarded request tried a second time (forward).
type retriedKey struct{}

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
	// receiving: the request has no body and may be tried again; so may
	// a send whose body keepSendBody kept (kept). broken is its failure,
	// held back (nothing written) until forward knows whether the session
	// moved meanwhile.
	receiving bool
	kept      bool
	broken    error
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
	st := &forwardState{m: m, owner: u, client: r.Context(), start: time.Now(), receiving: receiving(endpoint)}
	if !st.receiving {
		keepSendBody(r)
		st.kept = r.GetBody != nil
	} else {
		// Ended normally when this node stops (relay.go).
		rl := &relay{m: m, owner: u, uri: r.URL.RequestURI()}
		n.relays.add(rl)
		defer n.relays.drop(rl)
	}
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
	if st.kept {
		// Whoever reads the send next (another try, or this node's own
		// handler when Route serves it here) reads it whole.
		r.Body, _ = r.GetBody()
	}
	if st.broken != nil {
		// The owner broke the connection before answering. A node that
		// drains does so to the requests still queued on its listener
		// (in its backlog as the listener closed: connected, never
		// read); if the session moved (handed off), follow it;
		// otherwise the client gets 502 as for any failed owner. A send
		// comes here only with its body kept (keepSendBody): one the
		// owner did read is answered before the owner exits (its
		// shutdown waits for requests in flight), so a broken one was
		// not delivered, short of the owner's death at that instant.
		sctx, scancel := context.WithTimeout(r.Context(), n.opts.StoreTimeout)
		now, err := n.opts.Store.Owner(sctx, m.key(path.Base(path.Dir(r.URL.Path))))
		scancel()
		if err == nil && now != "" && now != owner {
			result = "moved"
			return forwardResult{moved: now}
		}
		if err == nil && now == owner && r.Context().Value(retriedKey{}) == nil {
			// Still the owner: it closed a kept-alive connection as
			// the request went out (a node beginning to drain closes
			// its idle ones). Once more, on a new connection, signed
			// anew. A first try that did reach the session cannot
			// leave a silent gap: its answer would have come, and a
			// poll whose client left closes the session (1002).
			result = "retried"
			return m.forward(w, r.WithContext(context.WithValue(r.Context(), retriedKey{}, true)), owner, endpoint)
		}
		st.otherErr = st.broken
		m.svc.Logger().Warn("sockjs: forwarding to session owner failed", "prefix", m.prefix, "owner", u.Host, "path", r.URL.Path, "err", st.broken)
		plainError(w, http.StatusBadGateway, "Session owner unavailable")
	}
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

// copyBufferSize is the size of the buffers a forwarded response is
// copied through: ReverseProxy's own default.
const copyBufferSize = 32 << 10

// copyBufferPool holds the buffers forwarded responses are copied
// through. Without it ReverseProxy allocates one per response: 32 KiB for
// a poll answer of a few bytes, more than half of what a forwarded
// request allocated (BenchmarkForward).
var copyBufferPool = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// copyBuffers is ReverseProxy's BufferPool over copyBufferPool.
type copyBuffers struct{}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[copyBufferSize]byte)[:] }

func (copyBuffers) Put(b []byte) {
	if cap(b) == copyBufferSize {
		copyBufferPool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}

// sendReplayMax is the largest send body a forwarding node keeps so that
// it can send it again (keepSendBody); a larger one streams through once.
// SockJS sends are mostly a few hundred bytes.
const sendReplayMax = 64 << 10

// keepSendBody reads a send's body into memory, when it is at most
// sendReplayMax, and gives r a GetBody over it: r.Body is then a fresh
// reader each time forward is called (Route tries the next owner after a
// refused connection), and rewrite makes the outgoing request replayable.
// A draining owner closes its kept-alive connections; a send that went
// out on one as it closed was never read, and net/http's Transport sends
// a replayable request again on a new connection by itself. Without it
// the client got 502, and sockjs-client closes its session on a failed
// send. A larger body is put back in front of what is left of it and
// streams through, not replayable.
func keepSendBody(r *http.Request) {
	if r.GetBody == nil && r.Body != nil && r.Body != http.NoBody {
		buf, err := io.ReadAll(io.LimitReader(r.Body, sendReplayMax+1))
		if err != nil || len(buf) > sendReplayMax {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(buf), errReader{err}, r.Body), r.Body}
			return
		}
		r.GetBody = func() (io.ReadCloser, error) { return &keptBody{bytes.NewReader(buf), buf}, nil }
	}
	if r.GetBody != nil {
		r.Body, _ = r.GetBody()
	}
}

// keptBody is a send's body that keepSendBody kept: rewrite signs it
// whole before it goes out (signKept).
type keptBody struct {
	*bytes.Reader
	buf []byte
}

func (*keptBody) Close() error { return nil }

// errReader returns err once the bytes before it are read (nil: EOF, so
// that the rest of the body follows).
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
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
	nonce := newNonce()
	length := int64(0)
	// pr.Out.Body wraps pr.In.Body (ReverseProxy's noopCloseReader), and
	// is nil for a body of Content-Length 0.
	if kb, ok := pr.In.Body.(*keptBody); ok && pr.Out.Body != nil {
		length = pr.In.ContentLength
		n.signKept(pr, kb.buf, nonce)
	} else if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
		// The body streams on, hashed as it goes; its MAC follows it
		// as a trailer, which needs the chunked encoding.
		length = pr.In.ContentLength
		sb := &signingBody{body: pr.Out.Body, sum: sha256.New(), trailer: http.Header{BodyTrailer: nil}, n: n, nonce: nonce}
		pr.Out.Body, pr.Out.Trailer = sb, sb.trailer
		pr.Out.ContentLength = -1
		pr.Out.GetBody = nil // a body larger than sendReplayMax, streamed once
	}
	pr.Out.Header.Set(ForwardHeader, n.sign(nonce, pr.Out.Method, pr.Out.URL.RequestURI(), remote, length, time.Now()))
}

// signKept gives a forwarded send the body keepSendBody kept, with its
// trailer's MAC taken before it goes out: the same request on the wire
// as a streamed body's (chunked, the MAC in BodyTrailer), but net/http's
// Transport (https:// owners), seeing a body in memory, writes the
// headers and the body together, then the trailer, rather than flushing
// the headers on their own first (3 writes become 2, seen with strace
// under BenchmarkForward; peerTransport writes any request whole).
// GetBody makes it replayable: sent again only when the owner closed the
// connection without reading it (see keepSendBody); the same nonce makes
// a copy the owner did read a refused replay, never a second delivery.
func (n *Node) signKept(pr *httputil.ProxyRequest, buf []byte, nonce [nonceLen]byte) {
	sum := sha256.Sum256(buf)
	trailer := http.Header{BodyTrailer: {n.bodyMAC(nonce, sum[:])}}
	pr.Out.Body, pr.Out.Trailer = io.NopCloser(bytes.NewReader(buf)), trailer
	pr.Out.ContentLength = -1
	pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	pr.Out.Header.Set("Idempotency-Key", hexenc.EncodeToString(nonce[:]))
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
	// A reset while dialling: the owner's listener closed with this
	// connection still in its backlog (a node shutting down).
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &dns) && dns.IsNotFound)
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
	if st.receiving || st.kept {
		st.broken = err // forward decides, nothing written yet
		return
	}
	st.otherErr = err
	st.m.svc.Logger().Warn("sockjs: forwarding to session owner failed", "prefix", st.m.prefix, "owner", st.owner.Host, "path", r.URL.Path, "err", err)
	plainError(w, http.StatusBadGateway, "Session owner unavailable")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// A forwarded request's signature (ForwardHeader) is
//
//	<unix seconds>:<nonce>:<body length>:<hex HMAC>
//
// nonce is 16 random bytes in hex, never accepted twice within the skew
// window; body length is the decimal Content-Length the client sent, or
// "-" when it sent its body chunked. The HMAC-SHA256 covers all three,
// the method, the request URI and the client's address (RemoteHeader). A
// request with a body sends it chunked, followed by the trailer
// BodyTrailer: the hex HMAC of the nonce and the body's SHA-256. The owner
// checks it when the body ends, before the last bytes reach the service,
// so a service that acts on a send only once it has read the whole body
// (every SockJS send endpoint does) never acts on a changed one. The body
// streams through the forwarding node as before: nothing is buffered.
const sigVersion = "sockjsd-forward-2"

// nonceLen is the length in bytes of a forwarded request's nonce.
const nonceLen = 16

// forwardSig is a parsed ForwardHeader.
type forwardSig struct {
	ts     string // unix seconds, as signed
	at     time.Time
	nonce  [nonceLen]byte
	length int64 // -1: chunked, of unknown length
	mac    []byte
}

// newNonce returns a fresh random nonce.
func newNonce() [nonceLen]byte {
	var b [nonceLen]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

// sign returns the ForwardHeader value for a request whose body has
// length bytes (-1: unknown).
func (n *Node) sign(nonce [nonceLen]byte, method, requestURI, remote string, length int64, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	l := lengthField(length)
	nh := hexenc.EncodeToString(nonce[:])
	return ts + ":" + nh + ":" + l + ":" + hexenc.EncodeToString(n.mac(ts, nh, l, method, requestURI, remote))
}

func lengthField(length int64) string {
	if length < 0 {
		return "-"
	}
	return strconv.FormatInt(length, 10)
}

func (n *Node) mac(ts, nonce, length, method, requestURI, remote string) []byte {
	m := n.macs.get(n.opts.Secret)
	defer n.macs.put(m)
	for _, s := range [...]string{sigVersion, ts, nonce, length, method, requestURI} {
		io.WriteString(m, s)
		m.Write(newline)
	}
	io.WriteString(m, remote)
	return m.Sum(nil)
}

var newline = []byte{'\n'}

// macPool keeps HMAC-SHA256 states keyed with the cluster secret. A new
// one hashes the key's two pads before the first byte of the message: a
// reset one restores them from the state saved at its first reset. Every
// forwarded request takes two MACs on each node (headers and body).
// A node has one secret: key is the same on every call.
type macPool struct{ pool sync.Pool }

func (p *macPool) get(key []byte) hash.Hash {
	if m, ok := p.pool.Get().(hash.Hash); ok {
		return m
	}
	return hmac.New(sha256.New, key)
}

// put resets m, which saves its keyed state on its first reset.
func (p *macPool) put(m hash.Hash) {
	m.Reset()
	p.pool.Put(m)
}

// bodyMAC is the BodyTrailer value of a body whose SHA-256 is sum, sent
// with nonce.
func (n *Node) bodyMAC(nonce [nonceLen]byte, sum []byte) string {
	m := n.macs.get(n.opts.Secret)
	defer n.macs.put(m)
	io.WriteString(m, sigVersion+"-body\n")
	m.Write(nonce[:])
	m.Write(sum)
	var out [sha256.Size]byte
	return hexenc.EncodeToString(m.Sum(out[:0]))
}

// maxSigLen bounds the ForwardHeader value parsed: a signature is about
// 130 bytes.
const maxSigLen = 256

// parseSig parses a ForwardHeader value, checking its form only.
func parseSig(sig string) (forwardSig, error) {
	var fs forwardSig
	if len(sig) > maxSigLen {
		return fs, errors.New("malformed signature")
	}
	parts := strings.Split(sig, ":")
	if len(parts) != 4 {
		return fs, errors.New("malformed signature")
	}
	sec, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || sec < 0 || parts[0] != strconv.FormatInt(sec, 10) {
		return fs, errors.New("malformed signature time")
	}
	fs.ts, fs.at = parts[0], time.Unix(sec, 0)
	if len(parts[1]) != 2*nonceLen {
		return fs, errors.New("malformed signature nonce")
	}
	if _, err := hexenc.Decode(fs.nonce[:], []byte(parts[1])); err != nil {
		return fs, errors.New("malformed signature nonce")
	}
	fs.length = -1
	if parts[2] != "-" {
		fs.length, err = strconv.ParseInt(parts[2], 10, 64)
		if err != nil || fs.length < 0 || parts[2] != strconv.FormatInt(fs.length, 10) {
			return fs, errors.New("malformed signature length")
		}
	}
	if fs.mac, err = hexenc.DecodeString(parts[3]); err != nil || len(fs.mac) != sha256.Size {
		return fs, errors.New("malformed signature MAC")
	}
	return fs, nil
}

// verify checks a forwarded request's signature: its form, its time, its
// MAC, and last that its nonce was not seen before (only a request signed
// with the secret is remembered).
func (n *Node) verify(r *http.Request, sig string, now time.Time) (forwardSig, error) {
	fs, err := parseSig(sig)
	if err != nil {
		return fs, err
	}
	if d := now.Sub(fs.at); d > n.opts.MaxSkew || d < -n.opts.MaxSkew {
		return fs, fmt.Errorf("signature time %s off by %s", fs.at.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	want := n.mac(fs.ts, hexenc.EncodeToString(fs.nonce[:]), lengthField(fs.length), r.Method, r.URL.RequestURI(), r.Header.Get(RemoteHeader))
	if !hmac.Equal(fs.mac, want) {
		return fs, errors.New("signature mismatch")
	}
	// The nonce is refused while its signature's time can pass the
	// check above: until MaxSkew after it (plus the second the time
	// was rounded to).
	if err := n.nonces.add(fs.nonce, fs.at.Add(n.opts.MaxSkew+time.Second), now); err != nil {
		return fs, err
	}
	return fs, nil
}

// signingBody is a forwarded request's body on the forwarding node: it
// hashes the body as it streams to the owner and sets the trailer at its
// end.
type signingBody struct {
	body    io.ReadCloser
	sum     hash.Hash
	trailer http.Header // the outgoing request's Trailer
	n       *Node
	nonce   [nonceLen]byte
}

func (b *signingBody) Read(p []byte) (int, error) {
	k, err := b.body.Read(p)
	b.sum.Write(p[:k])
	if err == io.EOF {
		// The transport writes the trailer after the body's EOF, from
		// the goroutine that reads it.
		b.trailer.Set(BodyTrailer, b.n.bodyMAC(b.nonce, b.sum.Sum(nil)))
	}
	return k, err
}

func (b *signingBody) Close() error { return b.body.Close() }

// errBodyChanged: a forwarded request's body does not match its signature.
var errBodyChanged = errors.New("sockjs: forwarded body does not match its signature")

// verifiedBody is a forwarded request's body on the owner: it passes the
// body on as it comes but withholds the end (the last bytes and EOF) until
// the trailer's MAC matches what came, answering errBodyChanged otherwise.
type verifiedBody struct {
	body    io.ReadCloser
	sum     hash.Hash
	trailer http.Header // the incoming request's Trailer: set once body ends
	left    int64       // bytes still to come as signed; -1: unknown
	n       *Node
	nonce   [nonceLen]byte
	refused func(error) // tells of a changed body
	err     error       // sticky
}

func (b *verifiedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left >= 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	var k int
	var err error
	if len(p) > 0 {
		k, err = b.body.Read(p)
		b.sum.Write(p[:k])
		if b.left >= 0 {
			b.left -= int64(k)
		}
	} else if b.left != 0 {
		return 0, nil
	}
	if err != nil && err != io.EOF {
		b.err = err
		return k, err
	}
	if err == nil && b.left != 0 {
		return k, nil
	}
	if err == nil {
		// All the signed bytes came: the end must follow, with the
		// trailer.
		var one [1]byte
		m, e := io.ReadAtLeast(b.body, one[:], 1)
		switch {
		case m > 0:
			return 0, b.fail(errors.New("body longer than signed"))
		case e != io.EOF:
			b.err = e
			return 0, e
		}
	}
	if b.left > 0 {
		return 0, b.fail(errors.New("body shorter than signed"))
	}
	got := []byte(b.trailer.Get(BodyTrailer))
	if !hmac.Equal(got, []byte(b.n.bodyMAC(b.nonce, b.sum.Sum(nil)))) {
		return 0, b.fail(errors.New("body hash mismatch"))
	}
	b.err = io.EOF
	return k, io.EOF
}

func (b *verifiedBody) fail(why error) error {
	b.err = fmt.Errorf("%w: %v", errBodyChanged, why)
	if b.refused != nil {
		b.refused(b.err)
	}
	return b.err
}

func (b *verifiedBody) Close() error { return b.body.Close() }
