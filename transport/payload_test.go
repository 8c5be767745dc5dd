package transport_test

// Payloads of every size class deliverPayload handles: read once (up to
// eight messages), checked whole and then delivered in chunks (more), and
// broken after messages that must then not be delivered.

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

// payload is a JSON array of n messages "<tag>-0" … "<tag>-<n-1>", and
// the frame the echo service answers it with.
func payload(tag string, n int) (body, frame string) {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%s-%d"`, tag, i)
	}
	b.WriteByte(']')
	return b.String(), "a" + b.String()
}

func TestPayloadSizes(t *testing.T) {
	base := newSuiteServer(t, transport.Options{})
	sizes := []int{1, 2, 7, 8, 9, 63, 64, 65, 200}

	t.Run("websocket", func(t *testing.T) {
		c := dialWS(t, wsURL(base)+"/echo/000/"+newSID()+"/websocket")
		if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
			t.Fatalf("open: %q, %v", m, err)
		}
		for _, n := range sizes {
			body, _ := payload(fmt.Sprint(n), n)
			wsWrite(t, c, body)
			// The echo service answers each message as it comes: the
			// frames hold them all, in order, however they are split.
			var got []string
			for len(got) < n {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, m, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("%d messages: after %d echoes: %v", n, len(got), err)
				}
				if m[0] == 'h' {
					continue
				}
				inner := strings.TrimSuffix(strings.TrimPrefix(string(m), `a["`), `"]`)
				got = append(got, strings.Split(inner, `","`)...)
			}
			for i, m := range got {
				if want := fmt.Sprintf("%d-%d", n, i); m != want {
					t.Fatalf("%d messages: echo %d is %q, want %q", n, i, m, want)
				}
			}
		}
		// Broken after more messages than are read in one pass: none of
		// them is delivered, and the connection closes with 2002... as
		// sockjs-node does (a close frame with the code, no SockJS frame).
		body, _ := payload("broken", 20)
		wsWrite(t, c, strings.TrimSuffix(body, "]")+`,"x`)
		msgs, ce := closeFrame(t, c)
		if ce == nil || ce.Code != transport.CodeBrokenFraming {
			t.Fatalf("broken payload: close %v, want %d", ce, transport.CodeBrokenFraming)
		}
		if len(msgs) > 0 {
			t.Fatalf("broken payload: %q delivered", msgs)
		}
	})

	t.Run("xhr", func(t *testing.T) {
		sid := newSID()
		url := base + "/echo/000/" + sid
		post := func(path, body string) (int, string) {
			t.Helper()
			res, err := http.Post(url+path, "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		if _, open := post("/xhr", ""); open != "o\n" {
			t.Fatalf("open: %q", open)
		}
		for _, n := range sizes {
			body, frame := payload(fmt.Sprint(n), n)
			if code, _ := post("/xhr_send", body); code != http.StatusNoContent {
				t.Fatalf("%d messages: xhr_send %d", n, code)
			}
			// One send's messages are delivered before the poll: one frame.
			if _, got := post("/xhr", ""); got != frame+"\n" {
				t.Fatalf("%d messages: poll %q, want %q", n, got, frame)
			}
		}
		body, _ := payload("broken", 20)
		code, answer := post("/xhr_send", strings.TrimSuffix(body, "]")+`,"x`)
		if code != http.StatusInternalServerError || answer != "Broken JSON encoding." {
			t.Fatalf("broken payload: %d %q", code, answer)
		}
		ok, _ := payload("after", 1)
		post("/xhr_send", ok)
		if _, got := post("/xhr", ""); got != `a["after-0"]`+"\n" {
			t.Fatalf("after a broken payload: poll %q, want only the next send's message", got)
		}
	})
}
