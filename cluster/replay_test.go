package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

// captured is a forwarded request as it left the forwarding node.
type captured struct {
	method, uri string
	header      http.Header
	body        []byte // as signed, before any change
	trailer     http.Header
}

// tapTransport records every forwarded request that has a body and lets
// a test change the body on the wire (a man in the middle), after the
// forwarding node signed it.
type tapTransport struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	tamper func([]byte) []byte
	got    []captured
}

func (t *tapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		// Reading the body to its end (the signing node's reader) sets
		// the trailer; the request then goes out with these bytes.
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		t.mu.Lock()
		t.got = append(t.got, captured{req.Method, req.URL.RequestURI(), req.Header.Clone(), body, req.Trailer.Clone()})
		tamper := t.tamper
		t.mu.Unlock()
		if tamper != nil {
			body = tamper(body)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return t.rt.RoundTrip(req)
}

func (t *tapTransport) last(tb testing.TB) captured {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.got) == 0 {
		tb.Fatal("no forwarded request with a body was captured")
	}
	return t.got[len(t.got)-1]
}

// sendRaw writes c to addr over a new connection, the body chunked with
// its trailer as the forwarding node sends it, and returns the status.
func sendRaw(t *testing.T, addr string, c captured, body []byte) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", c.method, c.uri, addr)
	for k, vs := range c.header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&b, "Trailer: %s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", BodyTrailer)
	fmt.Fprintf(&b, "%x\r\n%s\r\n0\r\n", len(body), body)
	for k, vs := range c.trailer {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// startTappedNodes runs two nodes whose forwarded requests go through a
// tap; the session "abc" is opened on the first, its owner.
func startTappedNodes(t *testing.T) (owner, via *testNode, tap *tapTransport) {
	t.Helper()
	tap = &tapTransport{rt: &http.Transport{DisableKeepAlives: true}}
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(_ *transport.Options, c *Options) { c.Transport = tap })
	owner, via = nodes[0], nodes[1]
	if code, body := post(t, owner.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on the owner: %d %q", code, body)
	}
	return owner, via, tap
}

// TestClusterReplayRefused: a forwarded send captured on the wire and sent
// again to the owner, as it was, within the skew window, is refused (403)
// and its message is not delivered a second time. Before the nonce, the
// replay got 204 and the session received the message twice.
func TestClusterReplayRefused(t *testing.T) {
	owner, via, tap := startTappedNodes(t)
	sess := "/echo/000/abc"
	if code, body := post(t, via.srv.URL+sess+"/xhr_send", `["one"]`, nil); code != 204 {
		t.Fatalf("send via the other node: %d %q", code, body)
	}
	c := tap.last(t)
	if c.trailer.Get(BodyTrailer) == "" || !strings.Contains(c.header.Get(ForwardHeader), ":") {
		t.Fatalf("forwarded request not signed as documented: %v, trailer %v", c.header, c.trailer)
	}
	if code := sendRaw(t, strings.TrimPrefix(owner.srv.URL, "http://"), c, c.body); code != http.StatusForbidden {
		t.Fatalf("replayed send: %d, want 403", code)
	}
	// The replay is answered: had it been delivered, "one" would come
	// again before "two".
	if code, body := post(t, via.srv.URL+sess+"/xhr_send", `["two"]`, nil); code != 204 {
		t.Fatalf("second send: %d %q", code, body)
	}
	if code, body := post(t, owner.srv.URL+sess+"/xhr", "", nil); code != 200 || body != `a["one","two"]`+"\n" {
		t.Fatalf("poll on the owner: %d %q, want each message once", code, body)
	}
}

// TestClusterTamperedBodyRefused: a forwarded send whose body a man in the
// middle changed after the forwarding node signed it is refused by the
// owner and never delivered; so is a body sent again with another
// request's valid signature and trailer. Before the body was signed, the
// changed message got 204 and reached the application.
func TestClusterTamperedBodyRefused(t *testing.T) {
	owner, via, tap := startTappedNodes(t)
	sess := "/echo/000/abc"
	tap.mu.Lock()
	tap.tamper = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("one"), []byte("evil")) }
	tap.mu.Unlock()
	if code, body := post(t, via.srv.URL+sess+"/xhr_send", `["one"]`, nil); code == 204 {
		t.Fatalf("changed send via the other node: %d %q, want refused", code, body)
	}
	tap.mu.Lock()
	tap.tamper = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("one"), []byte("two")) } // same length
	tap.mu.Unlock()
	if code, body := post(t, via.srv.URL+sess+"/xhr_send", `["one"]`, nil); code == 204 {
		t.Fatalf("changed send (same length) via the other node: %d %q, want refused", code, body)
	}
	tap.mu.Lock()
	tap.tamper = nil
	tap.mu.Unlock()
	if code, body := post(t, via.srv.URL+sess+"/xhr_send", `["ok"]`, nil); code != 204 {
		t.Fatalf("unchanged send: %d %q", code, body)
	}
	if code, body := post(t, owner.srv.URL+sess+"/xhr", "", nil); code != 200 || body != `a["ok"]`+"\n" {
		t.Fatalf("poll on the owner: %d %q, want only the unchanged message", code, body)
	}
	// A body without its trailer, or with a valid trailer of another
	// request, is refused too: a fresh signature with the trailer of
	// the last capture.
	c := tap.last(t)
	signer := &Node{opts: Options{Secret: []byte("s3cret")}}
	c.header.Set(ForwardHeader, signer.sign(newNonce(), "POST", c.uri, c.header.Get(RemoteHeader), int64(len(`["ok"]`)), time.Now()))
	if code := sendRaw(t, strings.TrimPrefix(owner.srv.URL, "http://"), c, []byte(`["ok"]`)); code == 204 {
		t.Fatalf("body with another request's trailer: %d, want refused", code)
	}
	c.trailer = http.Header{}
	c.header.Set(ForwardHeader, signer.sign(newNonce(), "POST", c.uri, c.header.Get(RemoteHeader), int64(len(`["ok"]`)), time.Now()))
	if code := sendRaw(t, strings.TrimPrefix(owner.srv.URL, "http://"), c, []byte(`["ok"]`)); code == 204 {
		t.Fatalf("body without a trailer: %d, want refused", code)
	}
	if code, body := post(t, via.srv.URL+sess+"/xhr_send", `["last"]`, nil); code != 204 {
		t.Fatalf("last send: %d %q", code, body)
	}
	if code, body := post(t, owner.srv.URL+sess+"/xhr", "", nil); code != 200 || body != `a["last"]`+"\n" {
		t.Fatalf("poll on the owner: %d %q, want only the last message", code, body)
	}
}

// TestClusterChunkedSendForwarded: a client body of unknown length (sent
// chunked) is forwarded and verified at its end too.
func TestClusterChunkedSendForwarded(t *testing.T) {
	owner, via, _ := startTappedNodes(t)
	sess := "/echo/000/abc"
	req, _ := http.NewRequest("POST", via.srv.URL+sess+"/xhr_send", io.MultiReader(strings.NewReader(`["chun`), strings.NewReader(`ked"]`)))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("chunked send via the other node: %d", resp.StatusCode)
	}
	if code, body := post(t, owner.srv.URL+sess+"/xhr", "", nil); code != 200 || body != `a["chunked"]`+"\n" {
		t.Fatalf("poll on the owner: %d %q", code, body)
	}
}

// TestNonceCacheBounded: past its cap the cache refuses new nonces rather
// than grow, until the ones it holds expire.
func TestNonceCacheBounded(t *testing.T) {
	c := nonceCache{max: 3}
	now := time.Unix(1_000_000, 0)
	exp := now.Add(31 * time.Second)
	var nonces [][nonceLen]byte
	for range 4 {
		nonces = append(nonces, newNonce())
	}
	for _, n := range nonces[:3] {
		if err := c.add(n, exp, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.add(nonces[0], exp, now); err != errReplayed {
		t.Fatalf("a nonce seen: %v, want errReplayed", err)
	}
	if err := c.add(nonces[3], exp, now.Add(time.Second)); err != errNoncesFull {
		t.Fatalf("past the cap: %v, want errNoncesFull", err)
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d, want 3", c.len())
	}
	if err := c.add(nonces[3], exp, exp.Add(time.Millisecond)); err != nil {
		t.Fatalf("after the others expired: %v", err)
	}
	if c.len() != 1 {
		t.Fatalf("cache holds %d after expiry, want 1", c.len())
	}
}
