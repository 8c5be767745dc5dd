package transport

import (
	"container/list"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// Send bodies (xhr_send, jsonp_send) are where a client puts bytes into
// the server's memory, so each one passes three gates before it is read:
// a slot among its session's MaxConcurrentSends, its size in the
// service's BodyBudget, and a deadline (BodyReadTimeout) that covers
// waiting for the budget and reading the body.

// Defaults for the body options.
const (
	DefaultMaxConcurrentSends = 4
	DefaultBodyBudgetBytes    = 64 << 20
	DefaultBodyReadTimeout    = 10 * time.Second
)

// BodyBudget bounds the bytes of send bodies held at once, from reading
// through decoding to delivery, across every session of the services
// that share it. Safe for concurrent use.
//
// Bytes given back go straight to the waiters they are enough for, in
// the order they came (first fit): only those wake. Waking every waiter
// on every release, when the budget is exhausted and thousands wait,
// cost each release a wake-up per waiter, just when the server is
// busiest. A waiter that does not fit does not hold up a later one that
// does: a message reader may already hold part of the budget and need a
// little more to finish and give all of it back.
type BodyBudget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	waiters list.List // of *budgetWaiter, in arrival order
}

// budgetWaiter is one acquire waiting for n bytes; ready is closed once
// they are reserved for it.
type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// NewBodyBudget returns a budget of max bytes (DefaultBodyBudgetBytes if
// max <= 0).
func NewBodyBudget(max int) *BodyBudget {
	if max <= 0 {
		max = DefaultBodyBudgetBytes
	}
	return &BodyBudget{max: int64(max)}
}

// InUse is the number of bytes reserved now.
func (b *BodyBudget) InUse() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.used)
}

// tryAcquire reserves n bytes (at most the whole budget) if they are free
// now.
func (b *BodyBudget) tryAcquire(n int64) (int64, bool) {
	n = min(n, b.max)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n <= b.max {
		b.used += n
		return n, true
	}
	return 0, false
}

// acquire reserves n bytes (at most the whole budget), waiting until ctx
// ends for them to be free; it returns the amount to release, or false.
func (b *BodyBudget) acquire(ctx context.Context, n int64) (int64, bool) {
	n = min(n, b.max)
	b.mu.Lock()
	if b.used+n <= b.max {
		b.used += n
		b.mu.Unlock()
		return n, true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	e := b.waiters.PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return n, true
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		// Reserved for it as ctx ended: take it rather than give it
		// back, the caller can use it.
		return n, true
	default:
	}
	b.waiters.Remove(e)
	return 0, false
}

func (b *BodyBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	// First fit, in arrival order, until nothing is left to give.
	for e := b.waiters.Front(); e != nil && b.used < b.max; {
		next := e.Next()
		if w := e.Value.(*budgetWaiter); b.used+w.n <= b.max {
			b.used += w.n
			b.waiters.Remove(e)
			close(w.ready)
		}
		e = next
	}
	b.mu.Unlock()
}

func (o *Options) bodyDefaults() {
	if o.MaxConcurrentSends <= 0 {
		o.MaxConcurrentSends = DefaultMaxConcurrentSends
	}
	if o.BodyBudget == nil {
		o.BodyBudget = NewBodyBudget(0)
	}
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = DefaultBodyReadTimeout
	}
}

// heldBody is what a send body that passed the gates holds: its bytes of
// the budget and its session's send slot. A value, not a closure: that
// would be an allocation per send.
type heldBody struct {
	budget   *BodyBudget
	reserved int64
	s        *engine.Session
}

// release gives back what the body held.
func (b heldBody) release() {
	b.budget.release(b.reserved)
	b.s.ReleaseSendSlot()
}

// readBody reads a send request's body for session s through the three
// gates, answering 429, 413, 503, 408 or 400 when one refuses it. On
// success the caller must call held.release once it is done with the
// body.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, s *engine.Session) (body []byte, held heldBody, ok bool) {
	t := s.Transport()
	if !s.AcquireSendSlot(h.opts.MaxConcurrentSends) {
		h.limitHit(t, session.LimitConcurrentSends)
		plainError(w, http.StatusTooManyRequests, "Too many concurrent sends for this session.")
		return nil, heldBody{}, false
	}
	if h.handingOff(w, r, s) { // handoff.go
		return nil, heldBody{}, false
	}
	limit := int64(h.opts.MaxMessageBytes)
	if r.ContentLength > limit {
		s.ReleaseSendSlot()
		h.limitHit(t, session.LimitBodySize)
		plainError(w, http.StatusRequestEntityTooLarge, "Payload too large.")
		return nil, heldBody{}, false
	}
	want := limit // chunked: the most it may be
	if r.ContentLength >= 0 {
		want = r.ContentLength
	}
	deadline := time.Now().Add(h.opts.BodyReadTimeout)
	reserved, ok := h.opts.BodyBudget.tryAcquire(want)
	if !ok { // the budget is in use: wait, with a timer only then
		ctx, cancel := context.WithDeadline(r.Context(), deadline)
		reserved, ok = h.opts.BodyBudget.acquire(ctx, want)
		cancel()
	}
	if !ok {
		s.ReleaseSendSlot()
		h.limitHit(t, session.LimitBodyBudget)
		plainError(w, http.StatusServiceUnavailable, "Server busy, try again.")
		return nil, heldBody{}, false
	}
	held = heldBody{h.opts.BodyBudget, reserved, s}

	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(deadline)
	var err error
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err == nil {
		// Delivery may wait for the application: no deadline then, or
		// the connection's background read would end the request.
		_ = rc.SetReadDeadline(time.Time{})
		return body, held, true
	}
	// On error net/http's attempt to drain the rest of the body after
	// the answer must fail at once, so that the connection is closed
	// instead of waiting for a body that may never end.
	_ = rc.SetReadDeadline(time.Now())
	held.release()
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		h.limitHit(t, session.LimitBodySize)
		plainError(w, http.StatusRequestEntityTooLarge, "Payload too large.")
	case errors.Is(err, os.ErrDeadlineExceeded):
		h.limitHit(t, session.LimitBodyReadTimeout)
		if r.ProtoMajor == 1 {
			// HTTP/2 ends the stream alone; "Connection: close" would
			// end the connection and the other sessions on it (GOAWAY).
			setHeader(w.Header(), "Connection", hdrConnClose)
		}
		plainError(w, http.StatusRequestTimeout, "Body not received in time.")
	default:
		plainError(w, http.StatusBadRequest, "Could not read body.")
	}
	return nil, heldBody{}, false
}

// formValueInPlace returns the first value of key in the URL-encoded form
// body, percent-decoded in place in body's own bytes: url.ParseQuery
// would hold two more copies of a 1 MiB body.
func formValueInPlace(body []byte, key string) ([]byte, error) {
	for len(body) > 0 {
		var field []byte
		field, body, _ = cutByte(body, '&')
		name, value, _ := cutByte(field, '=')
		n, err := unescapeInPlace(name)
		if err != nil {
			return nil, err
		}
		if string(name[:n]) != key {
			continue
		}
		n, err = unescapeInPlace(value)
		if err != nil {
			return nil, err
		}
		return value[:n], nil
	}
	return nil, nil
}

func cutByte(b []byte, sep byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

var errBadEscape = errors.New("invalid URL escape")

// unescapeInPlace decodes '+' and %XX in b, writing into b, and returns
// the decoded length (never longer than the input).
func unescapeInPlace(b []byte) (int, error) {
	n := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '+':
			b[n] = ' '
		case '%':
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return 0, errBadEscape
			}
			b[n] = unhex(b[i+1])<<4 | unhex(b[i+2])
			i += 2
		default:
			b[n] = c
		}
		n++
	}
	return n, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
