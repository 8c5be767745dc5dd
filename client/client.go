package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transport names, as sockjs-client spells them.
const (
	WebSocket    = "websocket"
	XHRStreaming = "xhr-streaming"
	XHRPolling   = "xhr-polling"
	// EventSource receives over a text/event-stream response
	// (GET …/eventsource) and sends with xhr_send. Not in the default
	// list: a browser takes it where xhr-streaming does not work, a Go
	// program never needs it; it is for tests and load generators.
	EventSource = "eventsource"
)

// Options configure Dial. Zero values mean the documented defaults.
type Options struct {
	// Transports to try, in order. Default websocket, xhr-streaming,
	// xhr-polling.
	Transports []string
	// ConnectTimeout bounds each transport's attempt to get the open
	// frame. A streaming response that a buffering proxy holds back runs
	// into it, and the next transport is tried. Default 10s.
	ConnectTimeout time.Duration
	// HTTPClient makes the HTTP requests. Default: a client with no
	// overall timeout (streaming responses are long), on a clone of
	// http.DefaultTransport whose idle connections close after
	// DefaultIdleConnTimeout. A client of your own should close them
	// before the server or balancer in front of it does (see
	// DefaultIdleConnTimeout).
	HTTPClient *http.Client
	// Header is added to every request (an auth token, say).
	Header http.Header
	// RecvQueue bounds messages received and not yet taken by Recv; when
	// it is full the client stops reading from the network. Default 4096.
	RecvQueue int
	// SendQueue bounds messages given to Send and not yet written; Send
	// waits while it is full. Default 4096.
	SendQueue int
	// MaxBatchBytes bounds one outgoing frame or xhr_send body; queued
	// messages are batched up to it. Default 256 KiB.
	MaxBatchBytes int
	// MaxFrameBytes bounds one frame from the server (a websocket message
	// or a line of a streaming or polling response); a bigger one closes
	// the connection with 1009. Default 32 MiB.
	MaxFrameBytes int
	// ReadTimeout is how long the server may stay silent (no frame, not
	// even a heartbeat, which servers send every 25 s by default) before
	// the connection is considered lost (1006). Time spent waiting for
	// Recv to make room in a full receive queue does not count. Default
	// 60s.
	ReadTimeout time.Duration
	// NetDialContext, when set, opens the websocket's TCP connection (to
	// pick a source address, say). HTTP transports use HTTPClient's.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultIdleConnTimeout is how long the default HTTP client keeps an
// idle connection. It is below the keep-alive timeouts of common balancers
// (haproxy as in deploy/haproxy.cfg 10 s, nginx 75 s, cloud balancers
// 60 s): a request written on a connection the other side is closing at
// that moment fails with no answer, and the client cannot send it again
// safely. An xhr_send may have been taken (sent again, it would be
// delivered twice), and so may a receiving request: a node that relayed a
// poll to the session's owner and died after the owner wrote its answer
// leaves the owner believing the messages delivered (sent again, the poll
// would go on after a silent gap). Such a failure ends the connection
// with 1006; the client avoids the race instead.
const DefaultIdleConnTimeout = 4 * time.Second

// defaultHTTPClient is the client of every Dial given no HTTPClient: one
// pool of connections, as with http.DefaultTransport.
var defaultHTTPClient = sync.OnceValue(func() *http.Client {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t = t.Clone()
		t.IdleConnTimeout = DefaultIdleConnTimeout
		return &http.Client{Transport: t}
	}
	return &http.Client{} // a program replaced DefaultTransport: keep its
})

func (o Options) withDefaults() Options {
	if len(o.Transports) == 0 {
		o.Transports = []string{WebSocket, XHRStreaming, XHRPolling}
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
	}
	if o.RecvQueue <= 0 {
		o.RecvQueue = 4096
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 4096
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 256 << 10
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 32 << 20
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 60 * time.Second
	}
	return o
}

// Errors.
var (
	ErrClosed      = errors.New("sockjs client: connection closed")
	ErrNoTransport = errors.New("sockjs client: no transport could connect")
	errFrameTooBig = errors.New("sockjs client: frame over MaxFrameBytes")
)

// Info is the server's /info answer.
type Info struct {
	WebSocket    bool     `json:"websocket"`
	CookieNeeded bool     `json:"cookie_needed"`
	Origins      []string `json:"origins"`
	Entropy      int64    `json:"entropy"`
}

// Conn is an open SockJS connection.
type Conn struct {
	transport string
	opts      Options
	recv      chan string
	send      chan string
	ctx       context.Context // cancelled on close
	cancel    context.CancelFunc
	done      chan struct{} // closed when every goroutine ended
	wg        sync.WaitGroup

	mu          sync.Mutex
	closeCode   int
	closeReason string
	closer      func() // transport-specific close (websocket close frame)

	// frames counts frames read and blocked is set while the reader waits
	// for room in recv: the watchdog closes a connection whose server is
	// silent for ReadTimeout without blaming a slow application.
	frames  atomic.Uint64
	blocked atomic.Bool
}

// Dial connects to the SockJS service at baseURL (for example
// "http://127.0.0.1:8081/echo"), trying the allowed transports in order.
func Dial(ctx context.Context, baseURL string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	// A query string (an auth token, say) goes on every request, after
	// the path the protocol adds, as sockjs-client does.
	path, query, _ := strings.Cut(baseURL, "?")
	base := target{strings.TrimSuffix(path, "/"), query}
	info, err := GetInfo(ctx, opts.HTTPClient, base.url("/info"), opts.Header)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, t := range opts.Transports {
		if t == WebSocket && !info.WebSocket {
			errs = append(errs, fmt.Errorf("%s: disabled by the server's /info", t))
			continue
		}
		c, err := dialTransport(ctx, base, t, opts)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoTransport, errors.Join(errs...))
}

// target is a service URL split into its path and query.
type target struct{ path, query string }

// url is the URL of p under the target, with the target's query.
func (t target) url(p string) string {
	if t.query == "" {
		return t.path + p
	}
	return t.path + p + "?" + t.query
}

// GetInfo reads a service's /info document from infoURL.
func GetInfo(ctx context.Context, hc *http.Client, infoURL string, hdr http.Header) (*Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, infoURL, nil)
	if err != nil {
		return nil, err
	}
	copyHeader(req.Header, hdr)
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sockjs client: /info: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sockjs client: /info: status %d", res.StatusCode)
	}
	var info Info
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("sockjs client: /info: %w", err)
	}
	return &info, nil
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// sessionURL is base/<server>/<session>: a random server id of three
// digits and a random session id.
func sessionURL(base target) target {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return target{fmt.Sprintf("%s/%03d/%s", base.path, int(b[0])%1000, hex.EncodeToString(b[1:])), base.query}
}

func newConn(t string, opts Options) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{
		transport: t,
		opts:      opts,
		recv:      make(chan string, opts.RecvQueue),
		send:      make(chan string, opts.SendQueue),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
	}
}

func dialTransport(ctx context.Context, base target, t string, opts Options) (*Conn, error) {
	switch t {
	case WebSocket:
		return dialWebSocket(ctx, base, opts)
	case XHRStreaming, XHRPolling, EventSource:
		return dialHTTP(ctx, base, t, opts)
	}
	return nil, fmt.Errorf("unknown transport %q", t)
}

// Transport is the transport in use.
func (c *Conn) Transport() string { return c.transport }

// Send queues msg; it waits while the send queue is full. It returns
// ErrClosed once the connection is closed.
func (c *Conn) Send(msg string) error {
	select {
	case <-c.ctx.Done():
		return ErrClosed
	default:
	}
	select {
	case c.send <- msg:
		return nil
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// Recv returns the next message, ErrClosed after the connection closed
// and every received message was taken, or ctx's error.
func (c *Conn) Recv(ctx context.Context) (string, error) {
	select {
	case m := <-c.recv:
		return m, nil
	default:
	}
	select {
	case m := <-c.recv:
		return m, nil
	case <-c.ctx.Done():
		select {
		case m := <-c.recv:
			return m, nil
		default:
			return "", ErrClosed
		}
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Close closes the connection and waits for its goroutines to end.
func (c *Conn) Close() error {
	c.shutdown(1000, "Normal closure")
	<-c.done
	return nil
}

// Done is closed when the connection has closed and its goroutines ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseInfo is the close code and reason once closed, as
// session.Session.CloseInfo reports them on the server: the server's close
// frame, or 1000 after Close, or 1006 when the connection broke. closed is
// false (and code 0) while the connection is open.
func (c *Conn) CloseInfo() (code int, reason string, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason, c.closeCode != 0
}

// shutdown records the first close code and stops everything.
func (c *Conn) shutdown(code int, reason string) {
	c.mu.Lock()
	first := c.closeCode == 0
	if first {
		c.closeCode, c.closeReason = code, reason
	}
	closer := c.closer
	c.mu.Unlock()
	if first && closer != nil {
		closer()
	}
	c.cancel()
}

// watchdog ends the connection when no frame arrived for ReadTimeout
// while the reader was free to read; it returns when the connection ends.
func (c *Conn) watchdog() {
	t := time.NewTicker(c.opts.ReadTimeout / 2)
	defer t.Stop()
	last, quiet := c.frames.Load(), 0
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		n := c.frames.Load()
		if n != last || c.blocked.Load() {
			last, quiet = n, 0
			continue
		}
		if quiet++; quiet >= 2 {
			c.shutdown(1006, "Server silent")
			return
		}
	}
}

// start runs fns and the watchdog as the connection's goroutines; done
// closes after all.
func (c *Conn) start(fns ...func()) {
	fns = append(fns, c.watchdog)
	c.wg.Add(len(fns))
	for _, fn := range fns {
		go func() {
			defer c.wg.Done()
			fn()
		}()
	}
	go func() {
		c.wg.Wait()
		close(c.done)
	}()
}

// handleFrame applies one frame; it returns false when the connection
// closed.
func (c *Conn) handleFrame(f []byte) bool {
	c.frames.Add(1)
	if len(f) == 0 {
		return true
	}
	switch f[0] {
	case 'o':
		// The open frame of the dial was read before this loop: another
		// one means the server lost the session (its node died, it
		// expired) and answered a new, empty one under the same id.
		// Going on would hide every message of the old one, so end, as
		// sockjs-client does.
		c.shutdown(1006, "Server lost session")
		return false
	case 'h':
		return true
	case 'a':
		var msgs []string
		if err := json.Unmarshal(f[1:], &msgs); err != nil {
			c.shutdown(1002, "Broken frame from server")
			return false
		}
		for _, m := range msgs {
			select {
			case c.recv <- m:
				continue
			default:
			}
			c.blocked.Store(true)
			select {
			case c.recv <- m:
				c.blocked.Store(false)
			case <-c.ctx.Done():
				return false
			}
		}
		return true
	case 'c':
		var cf []any
		code, reason := 1006, "Bad close frame"
		if json.Unmarshal(f[1:], &cf) == nil && len(cf) == 2 {
			if n, ok := cf[0].(float64); ok {
				code = int(n)
			}
			reason, _ = cf[1].(string)
		}
		c.shutdown(code, reason)
		return false
	}
	c.shutdown(1002, "Unknown frame from server")
	return false
}

// nextBatch waits for at least one queued message and returns every
// message queued, up to MaxBatchBytes, as a JSON array.
func (c *Conn) nextBatch(buf []string) ([]string, []byte, bool) {
	buf = buf[:0]
	select {
	case m := <-c.send:
		buf = append(buf, m)
	case <-c.ctx.Done():
		return buf, nil, false
	}
	size := len(buf[0])
	for size < c.opts.MaxBatchBytes {
		select {
		case m := <-c.send:
			buf = append(buf, m)
			size += len(m)
			continue
		default:
		}
		break
	}
	b, _ := json.Marshal(buf)
	return buf, b, true
}
