package transport_test

// The assertions of sockjs-protocol.py (sockjs/sockjs-protocol, current
// main), over real HTTP and WebSocket (RFC 6455 and Hixie-76/75) on
// 127.0.0.1. e2e/protocol-suite.sh runs the suite itself.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

var client = &http.Client{Timeout: 20 * time.Second}

type resp struct {
	code int
	h    http.Header
	body string
}

func (r resp) get(k string) string { return r.h.Get(k) }

func do(t *testing.T, method, url, body string, hdr ...string) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp{res.StatusCode, res.Header, string(b)}
}

func newSuiteServer(t *testing.T, opts transport.Options) string {
	t.Helper()
	if opts.ResponseLimit == 0 {
		opts.ResponseLimit = 4096
	}
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(opts)...)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newSID() string {
	return testenv.NewID()
}

func contentType(r resp) string { return strings.ReplaceAll(r.get("Content-Type"), " ", "") }

func verifyNotCached(t *testing.T, r resp) {
	t.Helper()
	if got := r.get("Cache-Control"); got != "no-store, no-cache, no-transform, must-revalidate, max-age=0" {
		t.Errorf("Cache-Control %q", got)
	}
	if r.get("Expires") != "" || r.get("Last-Modified") != "" {
		t.Errorf("Expires/Last-Modified must be absent: %q %q", r.get("Expires"), r.get("Last-Modified"))
	}
}

func verifyCORS(t *testing.T, r resp, origin string) {
	t.Helper()
	if origin != "" {
		if r.get("Access-Control-Allow-Origin") != origin || r.get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("CORS for %q: %q %q", origin, r.get("Access-Control-Allow-Origin"), r.get("Access-Control-Allow-Credentials"))
		}
	} else if r.get("Access-Control-Allow-Origin") != "*" || r.get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("CORS without origin: %q %q", r.get("Access-Control-Allow-Origin"), r.get("Access-Control-Allow-Credentials"))
	}
}

var longMaxAge = regexp.MustCompile(`max-age=[1-9][0-9]{6}`)

func verifyOptions(t *testing.T, url, methods string) {
	t.Helper()
	for _, origin := range []string{"test", "null"} {
		r := do(t, "OPTIONS", url, "", "Access-Control-Request-Method", methods, "Origin", origin)
		if r.code != 204 && r.code != 200 {
			t.Errorf("OPTIONS %s: %d", url, r.code)
		}
		cc := r.get("Cache-Control")
		if !strings.Contains(cc, "public") || !longMaxAge.MatchString(cc) || r.get("Expires") == "" {
			t.Errorf("OPTIONS %s cache: %q expires %q", url, cc, r.get("Expires"))
		}
		if ma, _ := strconv.Atoi(r.get("Access-Control-Max-Age")); ma <= 1000000 {
			t.Errorf("OPTIONS %s: max-age %q", url, r.get("Access-Control-Max-Age"))
		}
		for _, m := range strings.Split(methods, ",") {
			if !strings.Contains(r.get("Access-Control-Allow-Methods"), strings.TrimSpace(m)) {
				t.Errorf("OPTIONS %s: Allow-Methods %q lacks %s", url, r.get("Access-Control-Allow-Methods"), m)
			}
		}
		if r.body != "" {
			t.Errorf("OPTIONS body %q", r.body)
		}
		verifyCORS(t, r, origin)
	}
}

func verify405(t *testing.T, r resp) {
	t.Helper()
	if r.code != 405 || r.get("Content-Type") != "" || r.get("Allow") == "" || r.body != "" {
		t.Errorf("want bare 405 with Allow: %d ct=%q allow=%q body=%q", r.code, r.get("Content-Type"), r.get("Allow"), r.body)
	}
}

func TestGreetingAndNotFound(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	for _, u := range []string{base, base + "/"} {
		r := do(t, "GET", u, "")
		if r.code != 200 || contentType(r) != "text/plain;charset=UTF-8" || r.body != "Welcome to SockJS!\n" || r.get("Set-Cookie") != "" {
			t.Errorf("greeting %s: %d %q %q", u, r.code, contentType(r), r.body)
		}
	}
	for _, suffix := range []string{"/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"} {
		if r := do(t, "GET", base+suffix, ""); r.code != 404 {
			t.Errorf("GET %s: %d, want 404", suffix, r.code)
		}
	}
}

// iframeBody is the suite's own check of the page (IframePage.iframe_body,
// matched against the trimmed body), kept beside the byte-for-byte
// comparison so that the table says which configurations the suite accepts.
var iframeBody = regexp.MustCompile(`^<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="(?P<sockjs_url>[^"]*)"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe\(\);
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>$`)

// TestIframePage: the suite's IframePage tests, against the exact page each
// way of giving the client produces. A client served by the service itself
// (ClientScript, what cmd/server ships with) or named by the application
// without a hash gets the protocol's page byte for byte; only a
// cross-origin copy pinned by its integrity hash (the default CDN copy, or
// SockJSURL with SockJSIntegrity) gets integrity and crossorigin on its
// script tag, which the suite's body check rejects by design. Caching,
// ETag, 304 and the 404s hold for every configuration.
func TestIframePage(t *testing.T) {
	script := []byte("/* a sockjs-client */")
	cases := []struct {
		name         string
		opts         transport.Options
		want         string // the whole body
		suiteAccepts bool
	}{
		{"default options: CDN copy with integrity", transport.Options{},
			testenv.IframePageWithIntegrity(transport.DefaultSockJSURL, transport.DefaultSockJSIntegrity), false},
		{"own copy, as cmd/server ships", transport.Options{ClientScript: script},
			testenv.ProtocolIframePage("/echo/sockjs.min.js"), true},
		{"application URL", transport.Options{SockJSURL: "/static/sockjs.min.js", ClientScript: script},
			testenv.ProtocolIframePage("/static/sockjs.min.js"), true},
		{"application URL with integrity", transport.Options{SockJSURL: "https://cdn.example/sockjs.min.js", SockJSIntegrity: "sha384-x"},
			testenv.IframePageWithIntegrity("https://cdn.example/sockjs.min.js", "sha384-x"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verifyIframePage(t, newSuiteServer(t, c.opts)+"/echo", c.want, c.suiteAccepts)
		})
	}
}

func verifyIframePage(t *testing.T, base, want string, suiteAccepts bool) {
	t.Helper()
	for _, suffix := range []string{"/iframe.html", "/iframe-a.html", "/iframe-.html", "/iframe-0.1.2.html",
		"/iframe-0.1.2abc-dirty.2144.html", "/iframe-a.html?t=1234", "/iframe-0.1.2.html?t=123414",
		"/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123"} {
		r := do(t, "GET", base+suffix, "")
		if r.code != 200 || contentType(r) != "text/html;charset=UTF-8" {
			t.Errorf("%s: %d %q", suffix, r.code, contentType(r))
			continue
		}
		cc := r.get("Cache-Control")
		if !strings.Contains(cc, "public") || !longMaxAge.MatchString(cc) || r.get("Expires") == "" || r.get("ETag") == "" || r.get("Last-Modified") != "" {
			t.Errorf("%s caching: cc=%q expires=%q etag=%q lm=%q", suffix, cc, r.get("Expires"), r.get("ETag"), r.get("Last-Modified"))
		}
		if r.body != want {
			t.Errorf("%s body:\n%s\nwant byte for byte:\n%s", suffix, r.body, want)
		}
		m := iframeBody.FindStringSubmatch(strings.TrimSpace(r.body))
		if (m != nil) != suiteAccepts {
			t.Errorf("%s: the suite's check matches: %v, want %v", suffix, m != nil, suiteAccepts)
		}
		if m != nil && !strings.HasPrefix(m[1], "/") && !strings.HasPrefix(m[1], "http") {
			t.Errorf("%s: sockjs_url %q is neither a path nor an http URL", suffix, m[1])
		}
		if r.get("Set-Cookie") != "" {
			t.Errorf("%s sets a cookie", suffix)
		}
	}
	for _, suffix := range []string{"/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html"} {
		if r := do(t, "GET", base+suffix, ""); r.code != 404 {
			t.Errorf("%s: %d, want 404", suffix, r.code)
		}
	}
	r1, r2 := do(t, "GET", base+"/iframe.html", ""), do(t, "GET", base+"/iframe.html", "")
	if r1.get("ETag") == "" || r1.get("ETag") != r2.get("ETag") {
		t.Errorf("ETag not stable: %q %q", r1.get("ETag"), r2.get("ETag"))
	}
	r := do(t, "GET", base+"/iframe.html", "", "If-None-Match", r1.get("ETag"))
	if r.code != 304 || r.get("Content-Type") != "" || r.body != "" {
		t.Errorf("If-None-Match: %d %q %q", r.code, r.get("Content-Type"), r.body)
	}
}

func TestInfo(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	r := do(t, "GET", top+"/echo/info", "", "Origin", "test")
	if r.code != 200 || contentType(r) != "application/json;charset=UTF-8" || r.get("Set-Cookie") != "" {
		t.Fatalf("info: %d %q cookie %q", r.code, contentType(r), r.get("Set-Cookie"))
	}
	verifyNotCached(t, r)
	verifyCORS(t, r, "test")
	var info struct {
		WebSocket    *bool    `json:"websocket"`
		CookieNeeded *bool    `json:"cookie_needed"`
		Origins      []string `json:"origins"`
		Entropy      *uint32  `json:"entropy"`
	}
	if err := json.Unmarshal([]byte(r.body), &info); err != nil || info.WebSocket == nil || !*info.WebSocket ||
		info.CookieNeeded == nil || len(info.Origins) != 1 || info.Origins[0] != "*:*" || info.Entropy == nil {
		t.Fatalf("info body %s: %v", r.body, err)
	}
	e1 := *info.Entropy
	_ = json.Unmarshal([]byte(do(t, "GET", top+"/echo/info", "").body), &info)
	if *info.Entropy == e1 {
		t.Errorf("entropy repeated: %d", e1)
	}
	verifyOptions(t, top+"/echo/info", "OPTIONS, GET")
	r = do(t, "OPTIONS", top+"/echo/info", "", "Origin", "null", "Access-Control-Request-Method", "POST")
	if (r.code != 204 && r.code != 200) || r.body != "" || r.get("Access-Control-Allow-Origin") != "null" {
		t.Errorf("null origin preflight: %d %q", r.code, r.get("Access-Control-Allow-Origin"))
	}
	r = do(t, "GET", top+"/disabled_websocket_echo/info", "")
	if r.code != 200 || !strings.Contains(r.body, `"websocket":false`) {
		t.Errorf("disabled websocket info: %d %s", r.code, r.body)
	}
	r = do(t, "GET", top+"/cookie_needed_echo/info", "")
	if r.code != 200 || !strings.Contains(r.body, `"cookie_needed":true`) || r.get("Set-Cookie") != "" {
		t.Errorf("cookie_needed info: %d %s %q", r.code, r.body, r.get("Set-Cookie"))
	}
	verify405(t, do(t, "PUT", top+"/echo/info", ""))
}

func TestSessionURLs(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	n := newSID()[:6]
	for _, part := range []string{"/a/a" + n, "/_/_" + n, "/1/" + n, "/abcdefgh_i-j%20/abcdefg_i-j%20" + n} {
		if r := do(t, "POST", base+part+"/xhr", ""); r.code != 200 || r.body != "o\n" {
			t.Errorf("%s: %d %q", part, r.code, r.body)
		}
	}
	for _, suffix := range []string{"//", "/a./a", "/a/a.", "/./.", "/", "///"} {
		for _, m := range []string{"GET", "POST"} {
			if r := do(t, m, base+suffix+"/xhr", ""); r.code != 404 {
				t.Errorf("%s %s/xhr: %d, want 404", m, suffix, r.code)
			}
		}
	}
	sid := newSID()
	if r := do(t, "POST", base+"/000/"+sid+"/xhr", ""); r.body != "o\n" {
		t.Fatalf("open %q", r.body)
	}
	if r := do(t, "POST", base+"/000/"+sid+"/xhr_send", `["a"]`); r.code != 204 || r.body != "" {
		t.Fatalf("send %d %q", r.code, r.body)
	}
	if r := do(t, "POST", base+"/999/"+sid+"/xhr", ""); r.code != 200 || r.body != "a[\"a\"]\n" {
		t.Fatalf("server id must be ignored: %d %q", r.code, r.body)
	}
}

// asyncPost starts a receiving request and returns once its headers are
// in, so the session has a receiver attached.
func asyncPost(t *testing.T, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	res, err := client.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res, bufio.NewReader(res.Body)
}

func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	s, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read frame: %v (got %q)", err, s)
	}
	return s
}

func expectEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("want the response to end, got %q %v", b, err)
	}
}

func TestProtocolSimpleSessionAndClose(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	url := top + "/echo/000/" + newSID()
	if r := do(t, "POST", url+"/xhr", ""); r.code != 200 || r.body != "o\n" {
		t.Fatalf("open: %d %q", r.code, r.body)
	}
	if r := do(t, "POST", url+"/xhr_send", `["a"]`); r.code != 204 || r.body != "" {
		t.Fatalf("send: %d %q", r.code, r.body)
	}
	if r := do(t, "POST", url+"/xhr", ""); r.code != 200 || r.body != "a[\"a\"]\n" {
		t.Fatalf("poll: %d %q", r.code, r.body)
	}
	if r := do(t, "POST", top+"/echo/000/bad_session/xhr_send", `["a"]`); r.code != 404 {
		t.Fatalf("send to unknown session: %d", r.code)
	}
	// A streaming receiver is attached once its prelude arrived; a
	// second receiver is refused and the first is undisturbed.
	// (The prelude is written before the receiver attaches, as in
	// sockjs-node, so a delivered message is the proof of attachment.)
	_, br := asyncPost(t, url+"/xhr_streaming")
	readLine(t, br) // prelude
	do(t, "POST", url+"/xhr_send", `["attached"]`)
	if got := readLine(t, br); got != "a[\"attached\"]\n" {
		t.Fatalf("streaming receiver: %q", got)
	}
	r2 := do(t, "POST", url+"/xhr", "")
	if r2.code != 200 || r2.body != "c[2010,\"Another connection still open\"]\n" {
		t.Fatalf("second receiver: %d %q", r2.code, r2.body)
	}
	do(t, "POST", url+"/xhr_send", `["still"]`)
	if got := readLine(t, br); got != "a[\"still\"]\n" {
		t.Fatalf("first receiver after refused second: %q", got)
	}

	curl := top + "/close/000/" + newSID()
	for i, want := range []string{"o\n", "c[3000,\"Go away!\"]\n", "c[3000,\"Go away!\"]\n"} {
		if r := do(t, "POST", curl+"/xhr", ""); r.code != 200 || r.body != want {
			t.Fatalf("close service poll %d: %d %q, want %q", i, r.code, r.body, want)
		}
	}
}

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return c
}

func wsRead(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_, m, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("ws read: %v", err)
	}
	return string(m)
}

func wsWrite(t *testing.T, c *websocket.Conn, m string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
		t.Fatalf("ws write: %v", err)
	}
}

func TestWebSocketHTTPErrors(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	if r := do(t, "GET", base+"/0/0/websocket", ""); r.code != 400 {
		t.Errorf("plain GET: %d", r.code)
	}
	if r := do(t, "GET", base+"/0/0/websocket", "", "Upgrade", "WebSocket", "Connection", "close"); r.code != 400 {
		t.Errorf("Connection: close: %d", r.code)
	}
	verify405(t, do(t, "POST", base+"/0/0/websocket", "", "Upgrade", "WebSocket", "Connection", "Upgrade"))
	verify405(t, do(t, "POST", base+"/0/0/websocket", ""))
}

func TestWebSocket(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	t.Run("transport", func(t *testing.T) {
		c := dialWS(t, wsURL(top)+"/echo/000/"+newSID()+"/websocket")
		if m := wsRead(t, c); m != "o" {
			t.Fatalf("open %q", m)
		}
		wsWrite(t, c, `["a"]`)
		if m := wsRead(t, c); m != `a["a"]` {
			t.Fatalf("echo %q", m)
		}
	})
	t.Run("close", func(t *testing.T) {
		c := dialWS(t, wsURL(top)+"/close/000/"+newSID()+"/websocket")
		if m := wsRead(t, c); m != "o" {
			t.Fatalf("open %q", m)
		}
		if m := wsRead(t, c); m != `c[3000,"Go away!"]` {
			t.Fatalf("close frame %q", m)
		}
		if _, _, err := c.ReadMessage(); err == nil {
			t.Fatal("the connection must close after the close frame")
		}
	})
	t.Run("headersSanity", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(top, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /echo/000/%s/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Origin: http://asd\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n", newSID())
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 101 || res.Header.Get("Sec-WebSocket-Accept") != "HSmrc0sMlYUkAGmm5OPpG2HaGWk=" ||
			strings.ToLower(res.Header.Get("Connection")) != "upgrade" || strings.ToLower(res.Header.Get("Upgrade")) != "websocket" ||
			res.Header.Get("Content-Length") != "" {
			t.Fatalf("handshake: %d %v", res.StatusCode, res.Header)
		}
	})
	t.Run("emptyFrame", func(t *testing.T) {
		c := dialWS(t, wsURL(top)+"/echo/000/"+newSID()+"/websocket")
		wsRead(t, c)
		wsWrite(t, c, "")
		wsWrite(t, c, "[]")
		wsWrite(t, c, `["a"]`)
		if m := wsRead(t, c); m != `a["a"]` {
			t.Fatalf("after empty frames: %q", m)
		}
	})
	t.Run("reuseSessionId", func(t *testing.T) {
		u := wsURL(top) + "/echo/000/" + newSID() + "/websocket"
		c1, c2 := dialWS(t, u), dialWS(t, u)
		if wsRead(t, c1) != "o" || wsRead(t, c2) != "o" {
			t.Fatal("both websockets must open")
		}
		wsWrite(t, c1, `["a"]`)
		wsWrite(t, c2, `["b"]`)
		if m := wsRead(t, c1); m != `a["a"]` {
			t.Fatalf("c1 %q", m)
		}
		if m := wsRead(t, c2); m != `a["b"]` {
			t.Fatalf("c2 %q", m)
		}
		c1.Close()
		c2.Close()
		c3 := dialWS(t, u)
		if wsRead(t, c3) != "o" {
			t.Fatal("reopen")
		}
		wsWrite(t, c3, `["a"]`)
		if m := wsRead(t, c3); m != `a["a"]` {
			t.Fatalf("c3 %q", m)
		}
	})
	t.Run("brokenJSON", func(t *testing.T) {
		c := dialWS(t, wsURL(top)+"/echo/000/"+newSID()+"/websocket")
		wsRead(t, c)
		wsWrite(t, c, `["a`)
		for i := 0; i < 3; i++ { // at most a close frame may come before the end
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
		t.Fatal("broken JSON must close the connection")
	})
}

func TestXHRPolling(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	base := top + "/echo"
	for _, s := range []string{"/xhr", "/xhr_send"} {
		verifyOptions(t, base+"/abc/abc"+s, "OPTIONS, POST")
	}
	t.Run("transport", func(t *testing.T) {
		url := base + "/000/" + newSID()
		r := do(t, "POST", url+"/xhr", "", "Origin", "test")
		if r.code != 200 || r.body != "o\n" || contentType(r) != "application/javascript;charset=UTF-8" {
			t.Fatalf("open: %d %q %q", r.code, r.body, contentType(r))
		}
		verifyCORS(t, r, "test")
		verifyNotCached(t, r)
		r = do(t, "POST", url+"/xhr_send", `["x"]`, "Origin", "test")
		if r.code != 204 || r.body != "" || contentType(r) != "text/plain;charset=UTF-8" {
			t.Fatalf("send: %d %q %q", r.code, r.body, contentType(r))
		}
		verifyCORS(t, r, "test")
		verifyNotCached(t, r)
		if r = do(t, "POST", url+"/xhr", ""); r.code != 200 || r.body != "a[\"x\"]\n" {
			t.Fatalf("poll: %d %q", r.code, r.body)
		}
	})
	t.Run("invalidSession", func(t *testing.T) {
		if r := do(t, "POST", base+"/000/"+newSID()+"/xhr_send", `["x"]`); r.code != 404 {
			t.Fatalf("%d", r.code)
		}
	})
	t.Run("invalidJSON", func(t *testing.T) {
		url := base + "/000/" + newSID()
		do(t, "POST", url+"/xhr", "")
		if r := do(t, "POST", url+"/xhr_send", `["x`); r.code != 500 || !strings.Contains(r.body, "Broken JSON encoding.") {
			t.Fatalf("broken: %d %q", r.code, r.body)
		}
		if r := do(t, "POST", url+"/xhr_send", ""); r.code != 500 || !strings.Contains(r.body, "Payload expected.") {
			t.Fatalf("empty: %d %q", r.code, r.body)
		}
		if r := do(t, "POST", url+"/xhr_send", `["a"]`); r.code != 204 || r.body != "" {
			t.Fatalf("good: %d %q", r.code, r.body)
		}
		if r := do(t, "POST", url+"/xhr", ""); r.code != 200 || r.body != "a[\"a\"]\n" {
			t.Fatalf("poll: %d %q", r.code, r.body)
		}
	})
	t.Run("contentTypes", func(t *testing.T) {
		url := base + "/000/" + newSID()
		do(t, "POST", url+"/xhr", "")
		cts := []string{"text/plain", "T", "application/json", "application/xml", "", "application/json; charset=utf-8", "text/xml; charset=utf-8", "text/xml"}
		for _, ct := range cts {
			if r := do(t, "POST", url+"/xhr_send", `["a"]`, "Content-Type", ct); r.code != 204 || r.body != "" {
				t.Fatalf("%q: %d %q", ct, r.code, r.body)
			}
		}
		want := "a[" + strings.TrimSuffix(strings.Repeat(`"a",`, len(cts)), ",") + "]\n"
		if r := do(t, "POST", url+"/xhr", ""); r.body != want {
			t.Fatalf("poll %q want %q", r.body, want)
		}
	})
	t.Run("requestHeadersCORS", func(t *testing.T) {
		url := base + "/000/" + newSID() + "/xhr"
		r := do(t, "OPTIONS", url, "", "Origin", "test", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "a, b, c")
		verifyCORS(t, r, "test")
		if r.get("Access-Control-Allow-Headers") != "a, b, c" {
			t.Fatalf("allow headers %q", r.get("Access-Control-Allow-Headers"))
		}
		r = do(t, "OPTIONS", url, "", "Origin", "test", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "")
		if r.get("Access-Control-Allow-Headers") != "" {
			t.Fatalf("empty request headers echoed: %q", r.get("Access-Control-Allow-Headers"))
		}
		r = do(t, "OPTIONS", url, "", "Origin", "test", "Access-Control-Request-Method", "POST")
		if r.get("Access-Control-Allow-Headers") != "" || (r.code != 204 && r.code != 200) {
			t.Fatalf("no request headers: %d %q", r.code, r.get("Access-Control-Allow-Headers"))
		}
	})
	t.Run("sendingEmptyFrame", func(t *testing.T) {
		url := base + "/000/" + newSID()
		do(t, "POST", url+"/xhr", "")
		if r := do(t, "POST", url+"/xhr_send", "[]"); r.code != 204 {
			t.Fatalf("[]: %d", r.code)
		}
		do(t, "POST", url+"/xhr_send", `["a"]`)
		if r := do(t, "POST", url+"/xhr", ""); r.body != "a[\"a\"]\n" {
			t.Fatalf("poll %q", r.body)
		}
	})
}

func TestXHRStreaming(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	verifyOptions(t, base+"/abc/abc/xhr_streaming", "OPTIONS, POST")
	t.Run("transport", func(t *testing.T) {
		url := base + "/000/" + newSID()
		req, _ := http.NewRequest("POST", url+"/xhr_streaming", nil)
		req.Header.Set("Origin", "test")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		r := resp{res.StatusCode, res.Header, ""}
		if r.code != 200 || contentType(r) != "application/javascript;charset=UTF-8" {
			t.Fatalf("%d %q", r.code, contentType(r))
		}
		verifyCORS(t, r, "test")
		verifyNotCached(t, r)
		br := bufio.NewReader(res.Body)
		if got := readLine(t, br); got != strings.Repeat("h", 2048)+"\n" {
			t.Fatalf("prelude %d bytes", len(got))
		}
		if got := readLine(t, br); got != "o\n" {
			t.Fatalf("open %q", got)
		}
		if r := do(t, "POST", url+"/xhr_send", `["x"]`); r.code != 204 {
			t.Fatalf("send %d", r.code)
		}
		if got := readLine(t, br); got != "a[\"x\"]\n" {
			t.Fatalf("frame %q", got)
		}
	})
	t.Run("responseLimit", func(t *testing.T) {
		url := base + "/000/" + newSID()
		_, br := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br)
		if got := readLine(t, br); got != "o\n" {
			t.Fatalf("open %q", got)
		}
		msg := `"` + strings.Repeat("x", 128) + `"`
		for i := 0; i < 31; i++ {
			if r := do(t, "POST", url+"/xhr_send", "["+msg+"]"); r.code != 204 {
				t.Fatalf("send %d: %d", i, r.code)
			}
			if got := readLine(t, br); got != "a["+msg+"]\n" {
				t.Fatalf("frame %d: %q", i, got)
			}
		}
		expectEOF(t, br)
	})
}

func getStream(t *testing.T, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res, bufio.NewReader(res.Body)
}

// readN reads exactly len(want) bytes and compares.
func readExact(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
		t.Fatalf("read %q (%v), want %q", got, err, want)
	}
}

func TestEventSource(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	t.Run("transport", func(t *testing.T) {
		url := base + "/000/" + newSID()
		res, br := getStream(t, url+"/eventsource")
		r := resp{res.StatusCode, res.Header, ""}
		if r.code != 200 || contentType(r) != "text/event-stream" {
			t.Fatalf("%d %q", r.code, contentType(r))
		}
		verifyNotCached(t, r)
		readExact(t, br, "\r\n")
		readExact(t, br, "data: o\r\n\r\n")
		do(t, "POST", url+"/xhr_send", `["x"]`)
		readExact(t, br, "data: a[\"x\"]\r\n\r\n")
		if r := do(t, "POST", url+"/xhr_send", `["  \u0000\n\r "]`); r.code != 204 || r.body != "" {
			t.Fatalf("send %d", r.code)
		}
		readExact(t, br, `data: a["  \u0000\n\r "]`+"\r\n\r\n")
	})
	t.Run("responseLimit", func(t *testing.T) {
		url := base + "/000/" + newSID()
		_, br := getStream(t, url+"/eventsource")
		readExact(t, br, "\r\ndata: o\r\n\r\n")
		msg := `"` + strings.Repeat("x", 4096) + `"`
		do(t, "POST", url+"/xhr_send", "["+msg+"]")
		readExact(t, br, "data: a["+msg+"]\r\n\r\n")
		expectEOF(t, br)
	})
	verify405(t, do(t, "POST", base+"/000/"+newSID()+"/eventsource", ""))
}

const htmlfileHead = `<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>`

func TestHTMLFile(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	t.Run("transport", func(t *testing.T) {
		url := base + "/000/" + newSID()
		res, br := getStream(t, url+"/htmlfile?c=%63allback")
		r := resp{res.StatusCode, res.Header, ""}
		if r.code != 200 || contentType(r) != "text/html;charset=UTF-8" {
			t.Fatalf("%d %q", r.code, contentType(r))
		}
		verifyNotCached(t, r)
		head := fmt.Sprintf(htmlfileHead, "callback")
		// The head is padded past 1 KiB and ends with an empty line.
		var got strings.Builder
		for !strings.HasSuffix(got.String(), "\r\n\r\n") {
			got.WriteString(readLine(t, br))
		}
		if strings.TrimSpace(got.String()) != head || got.Len() <= 1024 {
			t.Fatalf("head (%d bytes):\n%s", got.Len(), got.String())
		}
		readExact(t, br, "<script>\np(\"o\");\n</script>\r\n")
		do(t, "POST", url+"/xhr_send", `["x"]`)
		readExact(t, br, "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n")
	})
	t.Run("callbacks", func(t *testing.T) {
		if r := do(t, "GET", base+"/a/a/htmlfile", ""); r.code != 500 || !strings.Contains(r.body, `"callback" parameter required`) {
			t.Fatalf("no callback: %d %q", r.code, r.body)
		}
		for _, cb := range []string{"%20", "*", "abc(", "abc%28"} {
			if r := do(t, "GET", base+"/a/a/htmlfile?c="+cb, ""); r.code != 500 || !strings.Contains(r.body, `invalid "callback" parameter`) {
				t.Fatalf("callback %q: %d %q", cb, r.code, r.body)
			}
		}
	})
	t.Run("responseLimit", func(t *testing.T) {
		url := base + "/000/" + newSID()
		_, br := getStream(t, url+"/htmlfile?c=callback")
		var head strings.Builder
		for !strings.HasSuffix(head.String(), "\r\n\r\n") {
			head.WriteString(readLine(t, br))
		}
		readExact(t, br, "<script>\np(\"o\");\n</script>\r\n")
		msg := strings.Repeat("x", 4096)
		do(t, "POST", url+"/xhr_send", `["`+msg+`"]`)
		readExact(t, br, "<script>\np(\"a[\\\""+msg+"\\\"]\");\n</script>\r\n")
		expectEOF(t, br)
	})
}

func TestJSONP(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	base := top + "/echo"
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	t.Run("transport", func(t *testing.T) {
		url := base + "/000/" + newSID()
		r := do(t, "GET", url+"/jsonp?c=%63allback", "")
		if r.code != 200 || contentType(r) != "application/javascript;charset=UTF-8" || r.body != "/**/callback(\"o\");\r\n" {
			t.Fatalf("open: %d %q %q", r.code, contentType(r), r.body)
		}
		verifyNotCached(t, r)
		r = do(t, "POST", url+"/jsonp_send", "d=%5B%22x%22%5D", form...)
		if r.code != 200 || r.body != "ok" || contentType(r) != "text/plain;charset=UTF-8" {
			t.Fatalf("send: %d %q %q", r.code, r.body, contentType(r))
		}
		verifyNotCached(t, r)
		if r = do(t, "GET", url+"/jsonp?c=%63allback", ""); r.code != 200 || r.body != "/**/callback(\"a[\\\"x\\\"]\");\r\n" {
			t.Fatalf("poll: %q", r.body)
		}
	})
	t.Run("callbacks", func(t *testing.T) {
		if r := do(t, "GET", base+"/a/a/jsonp", ""); r.code != 500 || !strings.Contains(r.body, `"callback" parameter required`) {
			t.Fatalf("no callback: %d %q", r.code, r.body)
		}
		for _, cb := range []string{"%20", "*", "abc(", "abc%28"} {
			if r := do(t, "GET", base+"/a/a/jsonp?c="+cb, ""); r.code != 500 || !strings.Contains(r.body, `invalid "callback" parameter`) {
				t.Fatalf("callback %q: %d %q", cb, r.code, r.body)
			}
		}
	})
	t.Run("invalidJSON", func(t *testing.T) {
		url := base + "/000/" + newSID()
		if r := do(t, "GET", url+"/jsonp?c=x", ""); r.body != "/**/x(\"o\");\r\n" {
			t.Fatalf("open %q", r.body)
		}
		if r := do(t, "POST", url+"/jsonp_send", "d=%5B%22x", form...); r.code != 500 || !strings.Contains(r.body, "Broken JSON encoding.") {
			t.Fatalf("broken: %d %q", r.code, r.body)
		}
		for _, data := range []string{"", "d=", "p=p"} {
			if r := do(t, "POST", url+"/jsonp_send", data, form...); r.code != 500 || !strings.Contains(r.body, "Payload expected.") {
				t.Fatalf("%q: %d %q", data, r.code, r.body)
			}
		}
		if r := do(t, "POST", url+"/jsonp_send", "d=%5B%22b%22%5D", form...); r.body != "ok" {
			t.Fatalf("good: %q", r.body)
		}
		if r := do(t, "GET", url+"/jsonp?c=x", ""); r.code != 200 || r.body != "/**/x(\"a[\\\"b\\\"]\");\r\n" {
			t.Fatalf("poll %q", r.body)
		}
	})
	t.Run("contentTypes", func(t *testing.T) {
		url := base + "/000/" + newSID()
		do(t, "GET", url+"/jsonp?c=x", "")
		if r := do(t, "POST", url+"/jsonp_send", "d=%5B%22abc%22%5D", form...); r.body != "ok" {
			t.Fatalf("form: %q", r.body)
		}
		if r := do(t, "POST", url+"/jsonp_send", `["%61bc"]`, "Content-Type", "text/plain"); r.body != "ok" {
			t.Fatalf("plain: %q", r.body)
		}
		if r := do(t, "GET", url+"/jsonp?c=x", ""); r.body != "/**/x(\"a[\\\"abc\\\",\\\"%61bc\\\"]\");\r\n" {
			t.Fatalf("poll %q", r.body)
		}
	})
	t.Run("close", func(t *testing.T) {
		url := top + "/close/000/" + newSID()
		for i, want := range []string{"/**/x(\"o\");\r\n", "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n", "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n"} {
			if r := do(t, "GET", url+"/jsonp?c=x", ""); r.body != want {
				t.Fatalf("poll %d: %q", i, r.body)
			}
		}
	})
	t.Run("sendingEmptyFrame", func(t *testing.T) {
		url := base + "/000/" + newSID()
		do(t, "GET", url+"/jsonp?c=x", "")
		if r := do(t, "POST", url+"/jsonp_send", "d=%5B%5D", form...); r.body != "ok" {
			t.Fatalf("empty: %q", r.body)
		}
		do(t, "POST", url+"/jsonp_send", "d=%5B%22x%22%5D", form...)
		if r := do(t, "GET", url+"/jsonp?c=x", ""); r.body != "/**/x(\"a[\\\"x\\\"]\");\r\n" {
			t.Fatalf("poll %q", r.body)
		}
	})
}

func TestJSESSIONID(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	base := top + "/cookie_needed_echo"
	check := func(name string, h http.Header, want string) {
		t.Helper()
		parts := strings.Split(h.Get("Set-Cookie"), ";")
		if len(parts) < 2 || strings.TrimSpace(parts[0]) != "JSESSIONID="+want || strings.ToLower(strings.TrimSpace(parts[1])) != "path=/" {
			t.Errorf("%s: Set-Cookie %q", name, h.Get("Set-Cookie"))
		}
	}
	r := do(t, "POST", base+"/000/"+newSID()+"/xhr", "")
	check("xhr", r.h, "dummy")
	r = do(t, "POST", base+"/000/"+newSID()+"/xhr", "", "Cookie", "JSESSIONID=abcdef")
	check("xhr echo", r.h, "abcdef")
	res, _ := asyncPost(t, base+"/000/"+newSID()+"/xhr_streaming")
	check("xhr_streaming", res.Header, "dummy")
	res, _ = getStream(t, base+"/000/"+newSID()+"/eventsource")
	check("eventsource", res.Header, "dummy")
	res, _ = getStream(t, base+"/000/"+newSID()+"/htmlfile?c=%63allback")
	check("htmlfile", res.Header, "dummy")
	url := base + "/000/" + newSID()
	r = do(t, "GET", url+"/jsonp?c=%63allback", "")
	check("jsonp", r.h, "dummy")
	r = do(t, "POST", url+"/jsonp_send", "d=%5B%22x%22%5D", "Content-Type", "application/x-www-form-urlencoded")
	check("jsonp_send", r.h, "dummy")
	if r.body != "ok" {
		t.Errorf("jsonp_send %q", r.body)
	}
}

func TestRawWebSocket(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	c := dialWS(t, wsURL(top)+"/echo/websocket")
	wsWrite(t, c, "Hello world!\uffff")
	if m := wsRead(t, c); m != "Hello world!\uffff" {
		t.Fatalf("raw echo %q", m)
	}
	c2 := dialWS(t, wsURL(top)+"/close/websocket")
	_, _, err := c2.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Text != "Go away!" || ce.Code != 3000 {
		t.Fatalf("raw close: %v", err)
	}
}

// escapableByServer lists what the server must send as \uXXXX (from 255 up).
func escapableByServer(r rune) bool {
	return r <= 0x1f || (r >= 0x200c && r <= 0x200f) || (r >= 0x2028 && r <= 0x202f) || (r >= 0x2060 && r <= 0x206f) || (r >= 0xfff0 && r <= 0xffff)
}

func TestJSONEncoding(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo"
	t.Run("serverEncodes", func(t *testing.T) {
		var raw strings.Builder
		var esc strings.Builder
		esc.WriteByte('"')
		for r := rune(255); r < 65536; r++ {
			if escapableByServer(r) && (r < 0xd800 || r > 0xdfff) {
				raw.WriteRune(r)
				fmt.Fprintf(&esc, `\u%04x`, r)
			}
		}
		esc.WriteByte('"')
		url := base + "/000/" + newSID()
		do(t, "POST", url+"/xhr", "")
		if r := do(t, "POST", url+"/xhr_send", `["`+raw.String()+`"]`); r.code != 204 {
			t.Fatalf("send %d", r.code)
		}
		r := do(t, "POST", url+"/xhr", "")
		got := strings.TrimSpace(r.body)
		got = got[2 : len(got)-1]
		if got != esc.String() {
			t.Fatalf("server must \\u-escape every char in its ranges; got %d bytes, want %d", len(got), len(esc.String()))
		}
	})
	t.Run("serverDecodes", func(t *testing.T) {
		// Everything a client escapes, sent escaped, comes back as the
		// same string (whatever the server chose to escape).
		var esc strings.Builder
		esc.WriteByte('"')
		for r := 0; r < 65536; r++ {
			if r < 0x20 || r == '"' || r == '\\' || (r >= 0x7f && r <= 0x9f) || r == 0xad || (r >= 0x600 && r <= 0x604) ||
				(r >= 0x2000 && r <= 0x20ff) || r == 0xfeff || r >= 0xfff0 || (r >= 0x300 && r <= 0x333) {
				if r >= 0xd800 && r <= 0xdfff {
					continue
				}
				fmt.Fprintf(&esc, `\u%04x`, r)
			}
		}
		esc.WriteByte('"')
		url := base + "/000/" + newSID()
		do(t, "POST", url+"/xhr", "")
		if r := do(t, "POST", url+"/xhr_send", "["+esc.String()+"]"); r.code != 204 {
			t.Fatalf("send %d %q", r.code, r.body)
		}
		r := do(t, "POST", url+"/xhr", "")
		got := strings.TrimSpace(r.body)
		var a, b string
		if err := json.Unmarshal([]byte(got[2:len(got)-1]), &a); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(esc.String()), &b)
		if a != b {
			t.Fatal("decoded string differs from what was sent")
		}
	})
}

func TestHandlingClose(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	t.Run("closeFrame", func(t *testing.T) {
		url := top + "/close/000/" + newSID()
		_, br1 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br1)
		if got := readLine(t, br1); got != "o\n" {
			t.Fatalf("open %q", got)
		}
		if got := readLine(t, br1); got != "c[3000,\"Go away!\"]\n" {
			t.Fatalf("close %q", got)
		}
		_, br2 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br2)
		if got := readLine(t, br2); got != "c[3000,\"Go away!\"]\n" {
			t.Fatalf("second %q", got)
		}
		expectEOF(t, br1)
		expectEOF(t, br2)
	})
	t.Run("closeRequest", func(t *testing.T) {
		url := top + "/echo/000/" + newSID()
		_, br1 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br1)
		readLine(t, br1)
		_, br2 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br2)
		if got := readLine(t, br2); got != "c[2010,\"Another connection still open\"]\n" {
			t.Fatalf("second %q", got)
		}
		expectEOF(t, br2)
	})
	t.Run("abortXHRStreaming", func(t *testing.T) {
		url := top + "/echo/000/" + newSID()
		res1, br1 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br1)
		readLine(t, br1)
		_, br2 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br2)
		if got := readLine(t, br2); got != "c[2010,\"Another connection still open\"]\n" {
			t.Fatalf("second %q", got)
		}
		expectEOF(t, br2)
		res1.Body.Close()
		// Right after the abort, whether or not the server noticed it
		// yet: "o" or 1002, never 2010 (TestAbortThenReceiveNever2010
		// runs this and the polling case 200 times).
		_, br3 := asyncPost(t, url+"/xhr_streaming")
		readLine(t, br3)
		if got := readLine(t, br3); got != "o\n" && got != "c[1002,\"Connection interrupted\"]\n" {
			t.Fatalf("after abort: %q", got)
		}
	})
}

// TestHTTPVersions speaks HTTP/1.0 and 1.1 on raw connections.
func TestHTTPVersions(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	host := strings.TrimPrefix(top, "http://")
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		return c, bufio.NewReader(c)
	}
	t.Run("http10sync", func(t *testing.T) {
		c, br := dial()
		fmt.Fprintf(c, "GET /echo HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || len(res.TransferEncoding) > 0 || string(body) != "Welcome to SockJS!\n" {
			t.Fatalf("%d %v %q", res.StatusCode, res.TransferEncoding, body)
		}
		if res.ContentLength != 19 && !res.Close {
			t.Fatalf("need Content-Length 19 or Connection: close")
		}
	})
	t.Run("http11sync", func(t *testing.T) {
		c, br := dial()
		for i := 0; i < 2; i++ {
			fmt.Fprintf(c, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n")
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 || string(body) != "Welcome to SockJS!\n" || res.Close {
				t.Fatalf("request %d: %d %q close=%v", i, res.StatusCode, body, res.Close)
			}
		}
	})
	t.Run("http10streaming", func(t *testing.T) {
		c, br := dial()
		fmt.Fprintf(c, "POST /close/000/%s/xhr_streaming HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", newSID())
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 || len(res.TransferEncoding) > 0 || res.Header.Get("Content-Length") != "" {
			t.Fatalf("%d te=%v cl=%q", res.StatusCode, res.TransferEncoding, res.Header.Get("Content-Length"))
		}
		body, err := io.ReadAll(res.Body) // ends when the server closes the connection
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Repeat("h", 2048) + "\no\nc[3000,\"Go away!\"]\n"
		if string(body) != want {
			t.Fatalf("body %q", body)
		}
	})
	t.Run("http11streaming", func(t *testing.T) {
		c, br := dial()
		fmt.Fprintf(c, "POST /close/000/%s/xhr_streaming HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", newSID())
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.TransferEncoding) == 0 || res.TransferEncoding[0] != "chunked" || res.Header.Get("Content-Length") != "" {
			t.Fatalf("te=%v", res.TransferEncoding)
		}
		body, err := io.ReadAll(res.Body) // the last chunk ends it
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Repeat("h", 2048) + "\no\nc[3000,\"Go away!\"]\n"; string(body) != want {
			t.Fatalf("body %q", body)
		}
	})
}

func TestWrongMethods(t *testing.T) {
	base := newSuiteServer(t, transport.Options{}) + "/echo/000/" + newSID()
	for _, c := range []struct{ method, path string }{
		{"GET", "/xhr"}, {"GET", "/xhr_send"}, {"GET", "/xhr_streaming"}, {"POST", "/eventsource"},
		{"POST", "/htmlfile?c=x"}, {"POST", "/jsonp?c=x"}, {"GET", "/jsonp_send"}, {"PUT", "/xhr"},
	} {
		t.Run(c.method+c.path, func(t *testing.T) { verify405(t, do(t, c.method, base+c.path, "")) })
	}
}

// hixieDial sends a Hixie-75 (no keys) or Hixie-76 upgrade request for
// path and returns the answer's headers, with the connection and its
// reader positioned after them.
func hixieDial(t *testing.T, top, path string, keys bool) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	host := strings.TrimPrefix(top, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nOrigin: " + top + "\r\n"
	if keys {
		req += "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return res, conn, br
}

func hixieRead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	if b, err := br.ReadByte(); err != nil || b != 0x00 {
		t.Fatalf("frame start %#x %v", b, err)
	}
	s, err := br.ReadString(0xFF)
	if err != nil {
		t.Fatalf("frame %q: %v", s, err)
	}
	return strings.TrimSuffix(s, "\xff")
}

func hixieWrite(t *testing.T, conn net.Conn, m string) {
	t.Helper()
	if _, err := io.WriteString(conn, "\x00"+m+"\xff"); err != nil {
		t.Fatal(err)
	}
}

// TestHixie76 is the protocol suite's test_haproxy, then a session over
// Hixie-76 and its closing handshake. The answer's headers must come
// before the client sends the 8 bytes of its key (HAProxy sends them only
// after the 101).
func TestHixie76(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	path := "/echo/000/" + newSID() + "/websocket"
	res, conn, br := hixieDial(t, top, path, true)
	if res.StatusCode != 101 || strings.ToLower(res.Header.Get("Connection")) != "upgrade" ||
		strings.ToLower(res.Header.Get("Upgrade")) != "websocket" ||
		res.Header.Get("Sec-WebSocket-Location") != wsURL(top)+path ||
		res.Header.Get("Sec-WebSocket-Origin") != top || res.Header.Get("Content-Length") != "" {
		t.Fatalf("handshake: %d %v", res.StatusCode, res.Header)
	}
	if _, err := io.WriteString(conn, "aaaaaaaa"); err != nil {
		t.Fatal(err)
	}
	var sum [16]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil || string(sum[:]) != "\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{" {
		t.Fatalf("challenge answer %q %v", sum[:], err)
	}
	if m := hixieRead(t, br); m != "o" {
		t.Fatalf("open %q", m)
	}
	hixieWrite(t, conn, `["a","\u00e9"]`)
	if m := hixieRead(t, br); m != `a["a","é"]` {
		t.Fatalf("echo %q", m)
	}
	// The client closes: the server answers and ends the connection.
	if _, err := conn.Write([]byte{0xFF, 0x00}); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "\xff\x00" {
		t.Fatalf("after the client's closing handshake: %q %v", rest, err)
	}
}

func TestHixie76ServerClose(t *testing.T) {
	top := newSuiteServer(t, transport.Options{MaxMessageBytes: 64})
	for _, tc := range []struct {
		name, service string
		send          string
		frames        []string
	}{
		{"application", "/close", "", []string{"o", `c[3000,"Go away!"]`}},
		{"tooBig", "/echo", `["` + strings.Repeat("x", 100) + `"]`, []string{"o", `c[1009,"Message too big"]`}},
		{"invalidUTF8", "/echo", "[\"\xc3\x28\"]", []string{"o", `c[1007,"Invalid UTF-8"]`}},
		{"brokenJSON", "/echo", `["a`, []string{"o"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, conn, br := hixieDial(t, top, tc.service+"/000/"+newSID()+"/websocket", true)
			io.WriteString(conn, "aaaaaaaa")
			io.ReadFull(br, make([]byte, 16))
			if tc.send != "" {
				if m := hixieRead(t, br); m != "o" {
					t.Fatalf("open %q", m)
				}
				hixieWrite(t, conn, tc.send)
				tc.frames = tc.frames[1:]
			}
			for _, want := range tc.frames {
				if m := hixieRead(t, br); m != want {
					t.Fatalf("frame %q, want %q", m, want)
				}
			}
			var bye [2]byte
			if _, err := io.ReadFull(br, bye[:]); err != nil || bye != [2]byte{0xFF, 0x00} {
				t.Fatalf("closing handshake %q %v", bye[:], err)
			}
			// The server waits for the client's answer, then closes.
			conn.Write([]byte{0xFF, 0x00})
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the handshake: %q %v", rest, err)
			}
		})
	}
}

func TestHixie75(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	path := "/echo/000/" + newSID() + "/websocket"
	res, conn, br := hixieDial(t, top, path, false)
	if res.StatusCode != 101 || res.Header.Get("WebSocket-Location") != wsURL(top)+path || res.Header.Get("WebSocket-Origin") != top {
		t.Fatalf("handshake: %d %v", res.StatusCode, res.Header)
	}
	if m := hixieRead(t, br); m != "o" {
		t.Fatalf("open %q", m)
	}
	hixieWrite(t, conn, `["x"]`)
	if m := hixieRead(t, br); m != `a["x"]` {
		t.Fatalf("echo %q", m)
	}
}

func TestHixieRefused(t *testing.T) {
	top := newSuiteServer(t, transport.Options{})
	for _, tc := range []struct {
		name string
		hdr  []string
		code int
	}{
		{"badKey", []string{"Connection", "Upgrade", "Upgrade", "WebSocket", "Sec-WebSocket-Key1", "12345", "Sec-WebSocket-Key2", "1 2"}, 400},
		{"oneKey", []string{"Connection", "Upgrade", "Upgrade", "WebSocket", "Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5"}, 400},
		{"notUpgrade", []string{"Connection", "close", "Upgrade", "WebSocket"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := do(t, "GET", top+"/echo/000/"+newSID()+"/websocket", "", tc.hdr...); r.code != tc.code {
				t.Fatalf("%d, want %d", r.code, tc.code)
			}
		})
	}
	// The raw websocket endpoint speaks RFC 6455 only.
	r := do(t, "GET", top+"/echo/websocket", "", "Connection", "Upgrade", "Upgrade", "WebSocket",
		"Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5", "Sec-WebSocket-Key2", "12998 5 Y3 1  .P00")
	if r.code != 400 {
		t.Fatalf("raw endpoint: %d", r.code)
	}
}
