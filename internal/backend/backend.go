// Package backend makes the signed JSON requests sockjsd sends to an
// application's backend over HTTP: the session proxy's hooks, the hub's
// hooks and webhooks all go through a Client, so that every one of them is
// signed the same way, bounded the same way and fails the same way.
//
// A Client bounds everything a backend could make it hold: the time of a
// request (Timeout), the requests in flight at once (MaxInFlight, a
// request waits for a slot within its own timeout), and the size of an
// answer (MaxAnswerBytes: a larger one is a failure, read no further).
package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sockjsd/sockjsd/internal/sign"
)

// Defaults of Options.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultMaxInFlight    = 512
	DefaultMaxAnswerBytes = 1 << 20
)

// Options configure a Client. Zero values mean the documented defaults.
type Options struct {
	// URL is the base URL; a call's path is appended to it.
	URL string
	// Secret signs every request (sign.Header). Empty: requests go
	// unsigned, which only tests should do.
	Secret []byte
	// Timeout bounds one request from the wait for a slot to the last
	// byte of the answer. Default 10s.
	Timeout time.Duration
	// MaxInFlight bounds the requests in flight at once. Default 512.
	MaxInFlight int
	// MaxAnswerBytes bounds an answer's body. Default 1 MiB.
	MaxAnswerBytes int64
	// Transport carries the requests. Default: a pooled transport of its
	// own, keeping up to MaxInFlight idle connections to the backend.
	Transport http.RoundTripper
	// Header is added to every request (for example a User-Agent).
	Header http.Header
}

// Outcome is how a call ended: a bounded set, fit for a metric label.
type Outcome string

// Outcomes of a call.
const (
	OK          Outcome = "ok"
	Timeout     Outcome = "timeout"     // no full answer within Options.Timeout
	Unreachable Outcome = "unreachable" // connection refused, reset, DNS
	BadStatus   Outcome = "status"      // an answer other than 2xx
	BadAnswer   Outcome = "bad_answer"  // not JSON, or not the expected shape
	TooLarge    Outcome = "too_large"   // over MaxAnswerBytes
	Busy        Outcome = "busy"        // no slot (MaxInFlight) within the timeout
	Canceled    Outcome = "canceled"    // the caller gave up (its context ended)
)

// Error is a failed call.
type Error struct {
	Outcome Outcome
	Status  int // the HTTP status, for BadStatus
	Path    string
	Err     error
}

func (e *Error) Error() string {
	if e.Outcome == BadStatus {
		return fmt.Sprintf("backend %s: status %d", e.Path, e.Status)
	}
	if e.Err != nil {
		return fmt.Sprintf("backend %s: %s: %v", e.Path, e.Outcome, e.Err)
	}
	return fmt.Sprintf("backend %s: %s", e.Path, e.Outcome)
}

func (e *Error) Unwrap() error { return e.Err }

// OutcomeOf is err's outcome: OK for nil, the Error's for an *Error.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Outcome
	}
	return BadAnswer
}

// Client calls one backend.
type Client struct {
	opts  Options
	base  string
	http  *http.Client
	slots chan struct{}
}

// New returns a Client for opts.URL.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("backend URL %q: want an http:// or https:// URL", opts.URL)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxAnswerBytes <= 0 {
		opts.MaxAnswerBytes = DefaultMaxAnswerBytes
	}
	if opts.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = opts.MaxInFlight
		t.MaxIdleConnsPerHost = opts.MaxInFlight
		t.MaxConnsPerHost = opts.MaxInFlight
		// Below the keep-alive timeouts backends commonly use (node 5 s,
		// uvicorn 5 s), so that a pooled connection is rarely reused just
		// as the backend closes it; Idempotency-Key (CallRaw) covers the
		// rest (gunicorn's 2 s).
		t.IdleConnTimeout = 4 * time.Second
		opts.Transport = t
	}
	return &Client{
		opts:  opts,
		base:  strings.TrimSuffix(opts.URL, "/"),
		http:  &http.Client{Transport: opts.Transport, CheckRedirect: noRedirect},
		slots: make(chan struct{}, opts.MaxInFlight),
	}, nil
}

// A backend's redirect is an answer, not a place to send the signed body
// to: following it could hand the request to a host the operator never
// named.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Timeout is the client's request timeout.
func (c *Client) Timeout() time.Duration { return c.opts.Timeout }

// URL is the client's base URL.
func (c *Client) URL() string { return c.base }

// Call POSTs req, marshalled as JSON, to the base URL plus path, signed,
// and decodes a 2xx answer into answer (nil: the body is read and
// dropped; an empty body decodes as {}). Any other status, an answer that
// is not JSON, one over MaxAnswerBytes, a timeout, or a refused connection
// is an *Error.
func (c *Client) Call(ctx context.Context, path string, req, answer any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return &Error{Outcome: BadAnswer, Path: path, Err: err}
	}
	return c.CallRaw(ctx, path, body, answer)
}

// CallRaw is Call with the request body already encoded.
func (c *Client) CallRaw(ctx context.Context, path string, body []byte, answer any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return c.ctxErr(ctx, path, Busy)
	}
	defer func() { <-c.slots }()

	r, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return &Error{Outcome: Unreachable, Path: path, Err: err}
	}
	for k, v := range c.opts.Header {
		r.Header[k] = v
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	// A unique key makes net/http retry the request once when a reused
	// connection turns out to have been closed by the backend before any
	// answer came (a keep-alive race, not a backend failure); a backend
	// that might have seen the first attempt drops the repeat by its key.
	r.Header.Set("Idempotency-Key", newKey())
	if len(c.opts.Secret) > 0 {
		r.Header.Set(sign.Header, sign.Value(c.opts.Secret, time.Now(), body))
	}
	resp, err := c.http.Do(r)
	if err != nil {
		if ctx.Err() != nil {
			return c.ctxErr(ctx, path, Timeout)
		}
		return &Error{Outcome: Unreachable, Path: path, Err: scrub(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Read a little so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return &Error{Outcome: BadStatus, Status: resp.StatusCode, Path: path}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxAnswerBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return c.ctxErr(ctx, path, Timeout)
		}
		return &Error{Outcome: Unreachable, Path: path, Err: scrub(err)}
	}
	if int64(len(data)) > c.opts.MaxAnswerBytes {
		return &Error{Outcome: TooLarge, Path: path, Err: fmt.Errorf("answer over %d bytes", c.opts.MaxAnswerBytes)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	if answer == nil {
		if !json.Valid(data) {
			return &Error{Outcome: BadAnswer, Path: path, Err: errors.New("answer is not JSON")}
		}
		return nil
	}
	if err := json.Unmarshal(data, answer); err != nil {
		return &Error{Outcome: BadAnswer, Path: path, Err: err}
	}
	return nil
}

// newKey is 128 random bits, naming one request.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// ctxErr tells the caller's own cancellation from the client's timeout.
func (c *Client) ctxErr(ctx context.Context, path string, deadline Outcome) error {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return &Error{Outcome: Canceled, Path: path, Err: context.Canceled}
	}
	return &Error{Outcome: deadline, Path: path, Err: fmt.Errorf("after %s", c.opts.Timeout)}
}

// scrub keeps an error's cause without the URL net/http puts in it: the
// backend's URL may hold credentials (user:password@host).
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return fmt.Errorf("%s: %w", ne.Op, ne.Err)
	}
	return err
}

// Close releases idle connections.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}
