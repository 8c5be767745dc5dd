package adversarial

import (
	"bufio"
	"fmt"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func sid() string { return testenv.NewID() }

// openXHR opens an xhr-polling session and returns its URL path.
func openXHR(t *testing.T, s *Server, prefix string) string {
	t.Helper()
	p := prefix + "/000/" + sid()
	if r := s.MustDo(t, "POST", p+"/xhr", ""); r.Code != 200 || r.Body != "o\n" {
		t.Fatalf("open %s: %d %q", p, r.Code, r.Body)
	}
	return p
}

// rawAnswer reads one HTTP answer from a raw connection.
func rawAnswer(br *bufio.Reader) (int, error) {
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// TestOversizeAndChunkedBodies: bodies over -max-message-bytes get 413
// whether they declare their length or come chunked, before the server
// holds more than the limit; a small chunked body is fine.
func TestOversizeAndChunkedBodies(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_DISCONNECT_DELAY": "2m"}})
	p := srv.Probe(t)
	path := openXHR(t, srv, "/echo")
	// One session per concurrent request: more than 4 sends in flight on
	// one session get 429 instead (TestConcurrentMegabyteSends).
	paths := make([]string, 50)
	for i := range paths {
		paths[i] = openXHR(t, srv, "/echo")
	}
	base := srv.RSS(t)

	// Declared too big: refused without reading.
	var declared atomic.Int32
	parallel(200, 50, func(i int) {
		path := paths[i%50]
		c := srv.Raw(t)
		fmt.Fprintf(c, "POST %s/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n[\"", path, 64<<20)
		if code, err := rawAnswer(bufio.NewReader(c)); err == nil && code == 413 {
			declared.Add(1)
		}
		c.Close()
	})
	if declared.Load() != 200 {
		t.Errorf("declared 64 MiB bodies: %d of 200 got 413", declared.Load())
	}
	// Chunked, over the limit: cut at the limit. (The sender stops soon
	// after the limit: bytes still arriving when the server closes would
	// make it reset the connection and lose the answer.)
	var chunked atomic.Int32
	parallel(100, 50, func(i int) {
		path := paths[i%50]
		c := srv.Raw(t)
		fmt.Fprintf(c, "POST %s/xhr_send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", path)
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("x", 64<<10))
		go func() {
			for i := 0; i < 17; i++ { // 1 MiB + 64 KiB
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		}()
		if code, err := rawAnswer(bufio.NewReader(c)); err == nil && code == 413 {
			chunked.Add(1)
		} else {
			t.Logf("chunked body over the limit: %d %v", code, err)
		}
		c.Close()
	})
	if chunked.Load() != 100 {
		t.Errorf("endless chunked bodies: %d of 100 got 413", chunked.Load())
	}
	// jsonp_send too.
	jc := srv.Raw(t)
	fmt.Fprintf(jc, "POST %s/jsonp_send HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\nd=", path, 2<<20)
	if code, err := rawAnswer(bufio.NewReader(jc)); err != nil || code != 413 {
		t.Errorf("jsonp_send over the limit: %d %v", code, err)
	}
	// A small chunked body is a valid send.
	c := srv.Raw(t)
	fmt.Fprintf(c, "POST %s/xhr_send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[\"a\"\r\n1\r\n]\r\n0\r\n\r\n", path)
	if code, err := rawAnswer(bufio.NewReader(c)); err != nil || code != 204 {
		t.Errorf("small chunked body: %d %v", code, err)
	}
	if r := srv.MustDo(t, "POST", path+"/xhr", ""); r.Body != "a[\"a\"]\n" {
		t.Errorf("poll after a chunked send: %q", r.Body)
	}
	srv.AssertGrowth(t, base, 100<<20)
	if n := srv.Metric(t, "sockjs_limit_hits_total", "limit", "body-size"); n < 301 {
		t.Errorf("body-size limit hits: %v, want at least 301", n)
	}
	p.Check(t)
}

// TestDeepAndBrokenPayloads: deep JSON, broken JSON and broken UTF-8 get
// the protocol's answers and cost nothing.
func TestDeepAndBrokenPayloads(t *testing.T) {
	t.Parallel()
	// The sends come without a poll for as long as the megabyte payloads
	// take on a loaded machine (over 5 s seen under make test): the
	// session must outlive them.
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_DISCONNECT_DELAY": "2m"}})
	p := srv.Probe(t)
	path := openXHR(t, srv, "/echo")
	base := srv.RSS(t)
	deep := strings.Repeat("[", 512<<10) + strings.Repeat("]", 512<<10)
	for _, tc := range []struct{ name, body, want string }{
		{"deep arrays", deep, "Broken JSON encoding."},
		{"deep objects", strings.Repeat(`{"a":`, 100<<10), "Broken JSON encoding."},
		{"number element", `["a",1]`, "Broken JSON encoding."},
		{"unterminated", `["a"`, "Broken JSON encoding."},
		{"bad escape", `["\x"]`, "Broken JSON encoding."},
		{"empty", "", "Payload expected."},
	} {
		r := srv.MustDo(t, "POST", path+"/xhr_send", tc.body)
		if r.Code != 500 || r.Body != tc.want {
			t.Errorf("%s: %d %q, want 500 %q", tc.name, r.Code, r.Body, tc.want)
		}
	}
	// Broken UTF-8 in a send becomes U+FFFD, as encoding/json does.
	if r := srv.MustDo(t, "POST", path+"/xhr_send", "[\"\xff\xfe ok\"]"); r.Code != 204 {
		t.Errorf("broken UTF-8 send: %d", r.Code)
	}
	if r := srv.MustDo(t, "POST", path+"/xhr", ""); r.Body != `a["\ufffd\ufffd ok"]`+"\n" {
		t.Errorf("broken UTF-8 echoed as %q", r.Body)
	}
	// Deep JSON on a websocket: broken framing, close 3000.
	ws, _, err := srv.WS(t, "/echo/000/"+sid()+"/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "o" {
		t.Fatalf("websocket open: %q %v", m, err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(deep)); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(ws); code != 3000 {
		t.Errorf("deep JSON on a websocket: close %d, want 3000", code)
	}
	// Broken UTF-8 in a websocket text frame: refused with 1007 (RFC
	// 6455), the SockJS close frame first; never a crash.
	ws2, _, err := srv.WS(t, "/echo/000/"+sid()+"/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _ = ws2.ReadMessage()
	_ = ws2.WriteMessage(websocket.TextMessage, []byte("[\"\xff ok\"]"))
	if _, m, err := ws2.ReadMessage(); err != nil || string(m) != `c[1007,"Invalid UTF-8"]` {
		t.Errorf("broken UTF-8 on a websocket: %q %v, want the SockJS close frame 1007", m, err)
	}
	if code := closeCode(ws2); code != websocket.CloseInvalidFramePayloadData {
		t.Errorf("broken UTF-8 on a websocket: close %d, want 1007", code)
	}
	srv.AssertGrowth(t, base, 64<<20)
	p.Check(t)
}

// closeCode reads until the websocket's close frame and returns its code
// (-1 if the connection ended without one).
func closeCode(c *websocket.Conn) int {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < 100; i++ {
		_, _, err := c.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		if err != nil {
			return -1
		}
	}
	return -1
}

// TestWebSocketOversizeMessage: close 1009 past -max-message-bytes.
func TestWebSocketOversizeMessage(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{})
	p := srv.Probe(t)
	base := srv.RSS(t)
	var (
		mu    sync.Mutex
		codes = map[int]int{} // close code (-1: none) -> connections
	)
	parallel(50, 25, func(int) {
		ws, _, err := srv.WS(t, "/echo/000/"+sid()+"/websocket", nil)
		if err != nil {
			t.Error(err)
			return
		}
		_, _, _ = ws.ReadMessage()
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`["`+strings.Repeat("x", 2<<20)+`"]`))
		code := closeCode(ws)
		ws.Close()
		mu.Lock()
		codes[code]++
		mu.Unlock()
	})
	if codes[websocket.CloseMessageTooBig] != 50 {
		// The other codes say why: 1013 or 1008 if the message was
		// read up to the limit under the budget, -1 if a reset
		// destroyed the close frame.
		t.Errorf("2 MiB websocket messages: %d of 50 closed with 1009; close codes -> connections: %v", codes[websocket.CloseMessageTooBig], codes)
	}
	srv.AssertGrowth(t, base, 100<<20)
	if n := srv.Metric(t, "sockjs_limit_hits_total", "limit", "message-size"); n != 50 {
		t.Errorf("message-size limit hits: %v, want 50", n)
	}
	p.Check(t)
}
