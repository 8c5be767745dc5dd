package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// The hub's cluster cases speak the hub protocol through the Go client
// (package client) over websocket, xhr-streaming and xhr-polling.

var hubTransports = []string{client.WebSocket, client.XHRStreaming, client.XHRPolling}

// hubHTTP carries every hub client's HTTP requests: enough idle
// connections for hundreds of polling clients.
// hubHTTP's idle connections close before haproxy's (timeout
// http-keep-alive 10s, deploy/haproxy.cfg): a POST sent on a connection
// haproxy is closing fails with EOF, which browsers send again and
// net/http does not (a poll or send lost so was a test's flake, not a
// server's fault).
var hubHTTP = &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true, IdleConnTimeout: 5 * time.Second}

// errSessionLost: a receiving request of an xhr transport got a second
// open frame, so the server no longer has the session (its owner died and
// the request opened a new one under the same id). sockjs-client closes
// with 1006 "Server lost session" then; the Go client ignores the frame
// and would poll the new, empty session for ever, so the tests watch for
// it themselves.
var errSessionLost = errors.New("server lost the session (second open frame)")

// sessionWatch spots open frames in the responses of a connection's
// receiving requests (/xhr, /xhr_streaming), and flags the second one.
// It notes which node the balancer sent each of them to (lbServerHeader):
// the first is the session's owner, the node that created it.
type sessionWatch struct {
	base   http.RoundTripper
	mu     sync.Mutex
	sid    string          // the session id, from the first receiving request
	opens  []openSeen      // every open frame seen, in order
	lost   context.Context // done once the session is lost
	cancel context.CancelFunc
	fails  []string // requests that failed: endpoint, node, status or error
}

// openSeen is an open frame: when it came, when the request that brought
// it was sent, and from which node (the balancer's server name, "" without
// the header). The node wrote it somewhere in between: a node killed after
// sent may have written it just before it died, and the client read it
// later (seen: an open read 120 ms after its node's SIGKILL).
type openSeen struct {
	at, sent time.Time
	server   string
}

// lbServerHeader names the node that haproxy sent a request to; the tests'
// haproxy adds it to every response (startHAProxy).
const lbServerHeader = "X-Sockjsd-Lb-Server"

func newSessionWatch() *sessionWatch {
	w := &sessionWatch{base: hubHTTP}
	w.lost, w.cancel = context.WithCancel(context.Background())
	return w
}

func (w *sessionWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	res, err := w.base.RoundTrip(req)
	if err != nil || res.StatusCode >= 300 {
		what := fmt.Sprint(err)
		if err == nil {
			what = fmt.Sprintf("%d from %s", res.StatusCode, res.Header.Get(lbServerHeader))
		}
		w.mu.Lock()
		w.fails = append(w.fails, fmt.Sprintf("%s %s +%s", path.Base(req.URL.Path), what, time.Now().Format("15:04:05.000")))
		w.mu.Unlock()
	}
	sse := strings.HasSuffix(req.URL.Path, "/eventsource")
	if err == nil && (sse || strings.HasSuffix(req.URL.Path, "/xhr") || strings.HasSuffix(req.URL.Path, "/xhr_streaming")) {
		w.mu.Lock()
		if w.sid == "" {
			// .../<server>/<session>/<endpoint>
			parts := strings.Split(req.URL.Path, "/")
			w.sid = parts[len(parts)-2]
		}
		w.mu.Unlock()
		res.Body = &openSpotter{ReadCloser: res.Body, w: w, sent: sent, server: res.Header.Get(lbServerHeader), lineStart: true, sse: sse}
	}
	return res, err
}

func (w *sessionWatch) opened(sent time.Time, server string) {
	w.mu.Lock()
	w.opens = append(w.opens, openSeen{time.Now(), sent, server})
	second := len(w.opens) > 1
	w.mu.Unlock()
	if second {
		w.cancel()
	}
}

// seen returns the session id and the open frames seen so far.
func (w *sessionWatch) seen() (string, []openSeen) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sid, append([]openSeen(nil), w.opens...)
}

// openSpotter finds lines that are exactly "o" in a response body: the
// open frame (messages are JSON, so a raw newline never occurs in one);
// on eventsource, lines "data: o\r".
type openSpotter struct {
	io.ReadCloser
	w         *sessionWatch
	sent      time.Time // when the request went out
	server    string    // the node the balancer sent the request to
	lineStart bool
	candidate bool
	sse       bool
	line      []byte // sse: the current line's start
}

func (o *openSpotter) Read(p []byte) (int, error) {
	n, err := o.ReadCloser.Read(p)
	if o.sse {
		for _, b := range p[:n] {
			if b == '\n' {
				if string(o.line) == "data: o\r" {
					o.w.opened(o.sent, o.server)
				}
				o.line = o.line[:0]
			} else if len(o.line) < 16 {
				o.line = append(o.line, b)
			}
		}
		return n, err
	}
	for _, b := range p[:n] {
		if o.candidate && b == '\n' {
			o.w.opened(o.sent, o.server)
		}
		o.candidate = o.lineStart && b == 'o'
		o.lineStart = b == '\n'
	}
	return n, err
}

// hubConn is a hub session.
type hubConn struct {
	c     *client.Conn
	watch *sessionWatch
}

// dialHub opens a hub session at base (a node's or the balancer's URL)
// over transport tr.
func dialHub(ctx context.Context, base, tr string) (*hubConn, error) {
	w := newSessionWatch()
	c, err := client.Dial(ctx, base+"/hub", client.Options{
		Transports:     []string{tr},
		HTTPClient:     &http.Client{Transport: w},
		ConnectTimeout: 15 * time.Second,
	})
	if err != nil {
		w.cancel()
		return nil, err
	}
	return &hubConn{c: c, watch: w}, nil
}

func mustDialHub(t *testing.T, base, tr string) *hubConn {
	t.Helper()
	h, err := dialHub(context.Background(), base, tr)
	if err != nil {
		t.Fatalf("hub over %s at %s: %v", tr, base, err)
	}
	t.Cleanup(h.close)
	return h
}

func (h *hubConn) close() {
	h.c.Close()
	h.watch.cancel()
}

func (h *hubConn) send(msg string) error { return h.c.Send(msg) }

// recv returns the next hub message, answering hub pings and skipping the
// server's round-trip pings on the way. Its error is ctx's, or
// client.ErrClosed when the connection closed, or errSessionLost.
func (h *hubConn) recv(ctx context.Context) (map[string]any, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.watch.lost, cancel)
	defer stop()
	for {
		m, err := h.c.Recv(ctx)
		if err != nil {
			if h.watch.lost.Err() != nil {
				return nil, errSessionLost
			}
			return nil, err
		}
		if strings.HasPrefix(m, "\x00sockjsd-ping:") {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(m), &v); err != nil {
			return nil, fmt.Errorf("hub sent invalid JSON %q", m)
		}
		if v["op"] == "ping" {
			_ = h.send(`{"op":"pong","id":` + jsonOf(v["id"]) + `}`)
			continue
		}
		return v, nil
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// expect reads the next message within 15s and checks its op and fields
// (name, JSON value, ...).
func (h *hubConn) expect(t *testing.T, op string, fields ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	v, err := h.recv(ctx)
	if err != nil {
		code, reason, _ := h.c.CloseInfo()
		t.Fatalf("%s: want %s, got %v (close %d %q)", h.c.Transport(), op, err, code, reason)
	}
	if v["op"] != op {
		t.Fatalf("%s: got %v, want op %q", h.c.Transport(), v, op)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if got := jsonOf(v[fields[i]]); got != fields[i+1] {
			t.Fatalf("%s: %v: %s = %s, want %s", h.c.Transport(), v, fields[i], got, fields[i+1])
		}
	}
	return v
}

// expectNumbered reads messages seq from..to of channel whose data is
// {"n": base+seq}.
func (h *hubConn) expectNumbered(t *testing.T, channel string, from, to, base int) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		h.expect(t, "message", "channel", jsonOf(channel), "seq", fmt.Sprint(seq), "data", fmt.Sprintf(`{"n":%d}`, base+seq))
	}
}

// apiResult is an answer of the hub's HTTP API.
type apiResult struct {
	code int
	body map[string]any
	err  error
}

// apiDo calls the hub's HTTP API at url with a JSON body (GET if empty).
func apiDo(url, body string) apiResult {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	method := http.MethodGet
	if body != "" {
		method = http.MethodPost
	}
	req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hubHTTP.RoundTrip(req)
	if err != nil {
		return apiResult{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	r := apiResult{code: res.StatusCode, err: err}
	if err == nil && json.Unmarshal(b, &r.body) != nil {
		r.err = fmt.Errorf("not JSON: %q", b)
	}
	return r
}

// publishN publishes {"n":n} on channel through base's API.
func publishN(base, channel string, n int) apiResult {
	return apiDo(base+"/api/publish", fmt.Sprintf(`{"channel":%q,"data":{"n":%d}}`, channel, n))
}

func mustPublish(t *testing.T, base, channel string, n int, wantSeq int) {
	t.Helper()
	r := publishN(base, channel, n)
	if r.err != nil || r.code != 200 || jsonOf(r.body["seq"]) != fmt.Sprint(wantSeq) {
		t.Fatalf("publish %d on %s through %s: %d %v %v, want 200 with seq %d", n, channel, base, r.code, r.body, r.err, wantSeq)
	}
}
