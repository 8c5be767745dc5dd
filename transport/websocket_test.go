package transport_test

// Websocket close handshake and the rules a client's messages must keep.

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

// closeFrame reads until the server's close frame and returns it; text
// messages before it are returned too. The client does not answer the
// close frame (the test decides when).
func closeFrame(t *testing.T, c *websocket.Conn) (msgs []string, ce *websocket.CloseError) {
	t.Helper()
	c.SetCloseHandler(func(int, string) error { return nil })
	for i := 0; i < 10; i++ {
		mt, m, err := c.ReadMessage()
		if errors.As(err, &ce) {
			return msgs, ce
		}
		if err != nil {
			t.Fatalf("want a close frame, got %v (after %q)", err, msgs)
		}
		if mt == websocket.TextMessage {
			msgs = append(msgs, string(m))
		}
	}
	t.Fatalf("no close frame after %q", msgs)
	return nil, nil
}

// TestWebSocketCloseHandshake: after its close frame the server waits for
// the client's before closing TCP, so that the client's answer does not
// meet a reset; and it closes as soon as that answer came.
func TestWebSocketCloseHandshake(t *testing.T) {
	const closeWait = 5 * time.Second
	base := newSuiteServer(t, transport.Options{CloseWait: closeWait})
	ws := wsURL(base)
	for _, tc := range []struct {
		name, url string
		send      string // a message that makes the server close
		code      int
	}{
		{"serverClose", ws + "/close/000/" + newSID() + "/websocket", "", websocket.CloseNormalClosure},
		{"brokenJSON", ws + "/echo/000/" + newSID() + "/websocket", `["a`, transport.CodeBrokenFraming},
		{"rawServerClose", ws + "/close/websocket", "", 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, tc.url)
			if tc.send != "" {
				wsWrite(t, c, tc.send)
			}
			_, ce := closeFrame(t, c)
			if ce.Code != tc.code {
				t.Fatalf("close code %d, want %d", ce.Code, tc.code)
			}
			// The server must keep the connection open (and read) until
			// the client answers: closing before would make the answer
			// meet a reset, or arrive unread and turn the close into a
			// reset. (Reading the answer is what the 300 ms show.)
			raw := c.UnderlyingConn()
			_ = raw.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			var ne net.Error
			if n, err := raw.Read(make([]byte, 16)); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("before the client's answer: %d bytes, %v; want the connection still open", n, err)
			}
			answered := time.Now()
			if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ""), time.Now().Add(5*time.Second)); err != nil {
				t.Fatalf("answering the close frame: %v", err)
			}
			_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := raw.Read(make([]byte, 16)); n != 0 || err != io.EOF {
				t.Fatalf("after the client's close frame: %d bytes, %v; want a clean end of stream", n, err)
			}
			if d := time.Since(answered); d > closeWait/2 {
				t.Fatalf("the server closed %v after the client's answer: it should not wait once the handshake is done", d)
			}
		})
	}
}

func TestWebSocketRules(t *testing.T) {
	base := serveOne(t, transport.Options{MaxMessageBytes: 1024}, services.Echo)
	sockjs := func() *websocket.Conn {
		c := dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
		if m := wsRead(t, c); m != "o" {
			t.Fatalf("open %q", m)
		}
		return c
	}
	raw := func() *websocket.Conn { return dialWS(t, wsURL(base)+"/websocket") }
	big := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name   string
		dial   func() *websocket.Conn
		mt     int
		msg    string
		code   int
		reason string
		frame  string // the SockJS close frame before the websocket one
	}{
		{"sockjsTooBig", sockjs, websocket.TextMessage, `["` + big + `"]`, 1009, "Message too big", `c[1009,"Message too big"]`},
		{"rawTooBig", raw, websocket.TextMessage, big, 1009, "Message too big", ""},
		{"sockjsInvalidUTF8", sockjs, websocket.TextMessage, "[\"\xff\xfe\"]", 1007, "Invalid UTF-8", `c[1007,"Invalid UTF-8"]`},
		{"rawInvalidUTF8", raw, websocket.TextMessage, "abc\xc3\x28", 1007, "Invalid UTF-8", ""},
		{"rawBinaryNotText", raw, websocket.BinaryMessage, "\x80\x81", 1003, "Binary data is not UTF-8 text", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			if err := c.WriteMessage(tc.mt, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			msgs, ce := closeFrame(t, c)
			if ce.Code != tc.code || ce.Text != tc.reason {
				t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, tc.code, tc.reason)
			}
			want := []string(nil)
			if tc.frame != "" {
				want = []string{tc.frame}
			}
			if strings.Join(msgs, "|") != strings.Join(want, "|") {
				t.Fatalf("messages before the close frame %q, want %q (an echo of invalid bytes is never allowed)", msgs, want)
			}
		})
	}
	// A frame header announcing far more than the limit: the server
	// reads no further than the limit and closes.
	t.Run("hugeFrameHeader", func(t *testing.T) {
		c := raw()
		hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0x05, 0xf5, 0xe1, 0x00, 1, 2, 3, 4} // text, masked, 100,000,000 bytes
		if _, err := c.UnderlyingConn().Write(append(hdr, strings.Repeat("y", 2000)...)); err != nil {
			t.Fatal(err)
		}
		_, ce := closeFrame(t, c)
		if ce.Code != 1009 || ce.Text != "Message too big" {
			t.Fatalf("close %d %q", ce.Code, ce.Text)
		}
	})
}

// A client that never answers the close frame is cut off after CloseWait.
func TestWebSocketCloseWaitBounded(t *testing.T) {
	const closeWait = 200 * time.Millisecond
	base := newSuiteServer(t, transport.Options{CloseWait: closeWait})
	c := dialWS(t, wsURL(base)+"/close/000/"+newSID()+"/websocket")
	closeFrame(t, c)
	start := time.Now()
	raw := c.UnderlyingConn()
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := raw.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("%d bytes, %v; want the server to close", n, err)
	}
	if d := time.Since(start); d < closeWait/2 || d > 5*time.Second {
		t.Fatalf("closed after %v, want about %v", d, closeWait)
	}
}
