package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// peerTransport carries forwarded requests to owners at http:// URLs (the
// default Options.Transport; https:// ones go through tls, a
// net/http Transport). It keeps HTTP/1.1 connections alive as net/http's
// Transport does, but writes each request and reads its response on the
// goroutine that forwards it, the whole request in one write: net/http's
// Transport hands every request to a writer goroutine and every response
// from a reader goroutine, and flushes a chunked body's headers and chunks
// on their own. On a forwarded request those hand-offs and writes cost
// more CPU than the HTTP work itself (see docs/bench.md, Cluster mode).
//
// What it keeps of net/http's Transport: a request that went out on a
// kept-alive connection the owner had closed, and of which nothing was
// answered, is sent again on a new connection when it may be sent twice
// (net/http's rule: no body or one GetBody gives again, and an
// Idempotency-Key, as a kept send has); a dial error is returned as is
// (ownerGone reads it); the request's context ends the exchange.
type peerTransport struct {
	dialer      *net.Dialer
	maxIdle     int           // idle connections kept per owner
	idleTimeout time.Duration // an idle connection older is closed, not used
	tls         http.RoundTripper

	mu      sync.Mutex
	idle    map[string][]*peerConn // owner host:port -> idle, most recent last
	sweeper *time.Timer            // runs sweep while idle connections are kept
}

// Defaults of peerTransport, as net/http's Transport had them here.
const (
	peerDialTimeout = 2 * time.Second
	peerMaxIdle     = 256
	// peerIdleTimeout stays below the server's IdleTimeout (120 s in
	// cmd/server), so that a node seldom finds an idle connection closed
	// by its owner.
	peerIdleTimeout = 90 * time.Second
)

func newPeerTransport() *peerTransport {
	d := &net.Dialer{Timeout: peerDialTimeout, KeepAlive: 30 * time.Second}
	return &peerTransport{
		dialer: d, maxIdle: peerMaxIdle, idleTimeout: peerIdleTimeout, idle: map[string][]*peerConn{},
		tls: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        4 * peerMaxIdle,
			MaxIdleConnsPerHost: peerMaxIdle,
			IdleConnTimeout:     peerIdleTimeout,
			DisableCompression:  true,
		},
	}
}

type peerConn struct {
	host  string
	c     net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // idle since
	used  bool      // it carried a request before: the owner may have closed it
}

// errNothingAnswered: the connection failed before any byte of the answer.
var errNothingAnswered = errors.New("connection failed before the answer began")

// RoundTrip implements http.RoundTripper.
func (t *peerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return t.tls.RoundTrip(req)
	}
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for again := false; ; again = true {
		pc, err := t.get(req.Context(), host)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(pc, req)
		if err == nil {
			return resp, nil
		}
		if again || !pc.used || !errors.Is(err, errNothingAnswered) || req.Context().Err() != nil || !replayable(req) {
			return nil, err
		}
		// The owner closed this kept-alive connection (its idle
		// timeout, a drain) as the request went out: once more, on a
		// new connection.
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// replayable is net/http's rule for sending a request again.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// get returns an idle connection to host, or a new one.
func (t *peerTransport) get(ctx context.Context, host string) (*peerConn, error) {
	now := time.Now()
	for pc := t.pop(host); pc != nil; pc = t.pop(host) {
		// The peek is a system call: outside the lock.
		if now.Sub(pc.since) < t.idleTimeout && alive(pc.c) {
			return pc, nil
		}
		pc.c.Close()
	}
	c, err := t.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	return &peerConn{host: host, c: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}, nil
}

// pop takes the most recently used idle connection to host, or nil.
func (t *peerTransport) pop(host string) *peerConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.idle[host]
	if len(l) == 0 {
		return nil
	}
	pc := l[len(l)-1]
	l[len(l)-1] = nil
	t.idle[host] = l[:len(l)-1]
	return pc
}

// put keeps pc for the next request to its host, or closes it.
func (t *peerTransport) put(pc *peerConn) {
	pc.used, pc.since = true, time.Now()
	t.mu.Lock()
	if l := t.idle[pc.host]; len(l) < t.maxIdle {
		t.idle[pc.host] = append(l, pc)
		pc = nil
		if t.sweeper == nil {
			t.sweeper = time.AfterFunc(t.idleTimeout/2, t.sweep)
		}
	}
	t.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

// sweep closes the connections idle for longer than idleTimeout, and
// forgets owners without idle connections: the owners' URLs change as
// nodes are replaced, and the connections to one that is gone would
// otherwise stay open. It runs every idleTimeout/2 while any connection
// is idle.
func (t *peerTransport) sweep() {
	var expired []*peerConn
	old := time.Now().Add(-t.idleTimeout)
	t.mu.Lock()
	for host, l := range t.idle {
		keep := l[:0]
		for _, pc := range l {
			if pc.since.Before(old) {
				expired = append(expired, pc)
			} else {
				keep = append(keep, pc)
			}
		}
		clear(l[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, host)
		} else {
			t.idle[host] = keep
		}
	}
	switch {
	case t.sweeper == nil: // CloseIdleConnections stopped it meanwhile
	case len(t.idle) > 0:
		t.sweeper.Reset(t.idleTimeout / 2)
	default:
		t.sweeper = nil
	}
	t.mu.Unlock()
	for _, pc := range expired {
		pc.c.Close()
	}
}

// CloseIdleConnections closes the idle connections (http.Client calls it
// on its Transport).
func (t *peerTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*peerConn{}
	if t.sweeper != nil {
		t.sweeper.Stop()
		t.sweeper = nil
	}
	t.mu.Unlock()
	for _, l := range idle {
		for _, pc := range l {
			pc.c.Close()
		}
	}
	if ci, ok := t.tls.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// unflushed hides the *bufio.Writer from Request.Write, which otherwise
// flushes it after the headers and after every chunk of a body it does
// not know to be in memory: the request goes out in one write, at the
// Flush after it.
type unflushed struct{ *bufio.Writer }

// exchange writes req on pc and reads the answer's head. The answer's body
// gives pc back (put) once read to its end and closed; any failure closes
// pc.
func (t *peerTransport) exchange(pc *peerConn, req *http.Request) (resp *http.Response, err error) {
	ctx := req.Context()
	// The request's end (client gone, ForwardTimeout) breaks off
	// whatever the exchange is blocked on.
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(e error) (*http.Response, error) {
		stop()
		pc.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, e
	}
	if err := req.Write(unflushed{pc.bw}); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return fail(fmt.Errorf("%w: writing the request: %w", errNothingAnswered, err))
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(fmt.Errorf("%w: writing the request: %w", errNothingAnswered, err))
	}
	for first := true; ; first = false {
		if _, err := pc.br.Peek(1); err != nil {
			if !first { // after a 1xx: the owner did read the request
				return fail(err)
			}
			return fail(fmt.Errorf("%w: %w", errNothingAnswered, err))
		}
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return fail(err)
		}
		// 1xx (a 100 Continue for a client's Expect): the answer
		// follows.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	resp.Body = &peerBody{t: t, pc: pc, body: resp.Body, stop: stop, keep: !resp.Close}
	return resp, nil
}

// peerBody is a forwarded request's answer body: read to its end and
// closed, its connection carries the next request.
type peerBody struct {
	t    *peerTransport
	pc   *peerConn
	body io.ReadCloser
	stop func() bool
	keep bool // the owner did not ask to close the connection
	eof  bool
	done bool
}

func (b *peerBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read of a closed forwarded body")
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *peerBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	b.body.Close()
	// stop is false once the context's end set the connection's
	// deadline: it cannot be used again.
	if stopped := b.stop(); b.eof && b.keep && stopped {
		b.t.put(b.pc)
	} else {
		b.pc.c.Close()
	}
	return nil
}
