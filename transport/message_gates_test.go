package transport_test

// The message gates (message.go) against a real server: the payload
// deadline, the message budget, on RFC 6455 and Hixie websockets.

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// limitCounter counts the limit hits a service reports.
type limitCounter struct {
	session.NopObserver
	mu   sync.Mutex
	hits map[session.Limit]int
}

func (o *limitCounter) LimitHit(_ session.Transport, l session.Limit) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hits == nil {
		o.hits = map[session.Limit]int{}
	}
	o.hits[l]++
}

func (o *limitCounter) count(l session.Limit) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[l]
}

// partialFrame is the start of a masked text frame that declares size
// bytes: its header and the first sent bytes of its payload.
func partialFrame(size, sent int) []byte {
	out := []byte{0x81, 0x80 | 127}
	out = binary.BigEndian.AppendUint64(out, uint64(size))
	out = append(out, 0, 0, 0, 0) // a zero mask: the payload as is
	return append(out, strings.Repeat("x", sent)...)
}

// TestWebSocketMessageDeadline: a message begun and not finished within
// MessageReadTimeout closes its connection with 1008 (SockJS: after
// c[1008,...]) and counts message-read-timeout; a connection idle between
// messages for longer than the timeout is not affected.
func TestWebSocketMessageDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	obs := &limitCounter{}
	base := serveOne(t, transport.Options{MessageReadTimeout: timeout, Session: session.Options{Observer: obs}}, services.Echo)
	for _, tc := range []struct {
		name, path string
		frame      string // the SockJS close frame before the close
	}{
		{"sockjs", "/000/" + newSID() + "/websocket", `c[1008,"Message not received in time"]`},
		{"raw", "/websocket", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := obs.count(session.LimitMessageReadTimeout)
			c := dialWS(t, wsURL(base)+tc.path)
			if tc.frame != "" {
				wsRead(t, c) // o
			}
			// Idle for three times the timeout: nothing happens.
			_ = c.SetReadDeadline(time.Now().Add(3 * timeout))
			if _, _, err := c.ReadMessage(); !isTimeout(err) {
				t.Fatalf("an idle connection: %v, want nothing", err)
			}
			// gorilla's connection is broken by the client-side timeout:
			// go on with a fresh one, and check it echoes first.
			c = dialWS(t, wsURL(base)+tc.path)
			msg, echo := `["hi"]`, `a["hi"]`
			if tc.frame != "" {
				wsRead(t, c)
			} else {
				msg, echo = "hi", "hi"
			}
			wsWrite(t, c, msg)
			if got := wsRead(t, c); got != echo {
				t.Fatalf("echo %q, want %q", got, echo)
			}
			// Half of a 100 KB message, then silence.
			start := time.Now()
			if _, err := c.UnderlyingConn().Write(partialFrame(100<<10, 50<<10)); err != nil {
				t.Fatal(err)
			}
			msgs, ce := closeFrame(t, c)
			took := time.Since(start)
			if ce.Code != transport.CodeMessageTimeout {
				t.Fatalf("close code %d, want %d", ce.Code, transport.CodeMessageTimeout)
			}
			if tc.frame != "" && (len(msgs) != 1 || msgs[0] != tc.frame) {
				t.Fatalf("frames before the close: %q, want %s", msgs, tc.frame)
			}
			if took < timeout || took > timeout+10*time.Second {
				t.Fatalf("closed after %v, want the timeout (%v) and at most 10s more", took, timeout)
			}
			if n := obs.count(session.LimitMessageReadTimeout) - before; n != 1 {
				t.Fatalf("%d message-read-timeout hits, want 1", n)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestWebSocketMessageBudget: a message that needs the budget while it is
// held (here by another session's message that waits for an application
// that does not read) waits for it until its deadline, then its
// connection closes with 1013 and message-budget is counted; once the
// holder is gone, the same message passes.
func TestWebSocketMessageBudget(t *testing.T) {
	const timeout = 500 * time.Millisecond
	obs := &limitCounter{}
	budget := transport.NewBodyBudget(64 << 10)
	opts := transport.Options{
		MessageReadTimeout: timeout,
		MessageBudget:      budget,
		Session:            session.Options{Observer: obs, RecvQueueBytes: 1 << 10},
	}
	stuck := make(chan struct{})
	var unstick sync.Once
	defer unstick.Do(func() { close(stuck) })
	base := serveOne(t, opts, func(s *session.Session) {
		if strings.Contains(s.Request().Path, "/stuck/") {
			select { // an application that does not read
			case <-stuck:
			case <-s.Context().Done():
			}
			return
		}
		services.Echo(s)
	})
	big := `["` + strings.Repeat("x", 60<<10) + `"]`
	holder := dialWS(t, wsURL(base)+"/stuck/"+newSID()+"/websocket")
	wsRead(t, holder)
	wsWrite(t, holder, `["a"]`) // queued: the queue is full from now on
	wsWrite(t, holder, big)     // waits for the queue in its 64 KiB buffer
	for end := time.Now().Add(10 * time.Second); budget.InUse() < 60<<10; time.Sleep(time.Millisecond) {
		if time.Now().After(end) { // no event to wait on: poll, bounded
			t.Fatalf("the holder's message reserved %d bytes, want 64 KiB", budget.InUse())
		}
	}

	start := time.Now()
	c := dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
	wsRead(t, c)
	wsWrite(t, c, `["`+strings.Repeat("y", 20<<10)+`"]`)
	msgs, ce := closeFrame(t, c)
	if ce.Code != transport.CodeServerBusy || len(msgs) != 1 || msgs[0] != `c[1013,"Server busy, try again later"]` {
		t.Fatalf("close %d after %.80q, want c[1013,...] and 1013", ce.Code, msgs)
	}
	if took := time.Since(start); took < timeout || took > timeout+10*time.Second {
		t.Fatalf("closed after %v, want the timeout (%v) and at most 10s more", took, timeout)
	}
	if n := obs.count(session.LimitMessageBudget); n != 1 {
		t.Fatalf("%d message-budget hits, want 1", n)
	}

	// The holder's application returns: its session ends, and with it
	// the wait of its message and the message's reservation. (A client
	// that leaves is not noticed while its reader waits for the
	// application; its session ends at its next heartbeat.)
	unstick.Do(func() { close(stuck) })
	c = dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
	wsRead(t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The holder's end reaches the server asynchronously: retry on
		// 1013 until it has.
		wsWrite(t, c, big)
		m := wsRead(t, c)
		if m == "a"+big {
			break
		}
		if !strings.HasPrefix(m, "c[1013,") || time.Now().After(deadline) {
			t.Fatalf("after the holder left: %.40q", m)
		}
		c = dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
		wsRead(t, c)
	}
}

// TestHixieMessageDeadline: a Hixie-76 frame begun and not finished in
// time ends its connection with c[1008,...] and the closing handshake,
// counted; an over-size frame is counted too.
func TestHixieMessageDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	obs := &limitCounter{}
	top := serveOne(t, transport.Options{MessageReadTimeout: timeout, MaxMessageBytes: 64 << 10, Session: session.Options{Observer: obs}}, services.Echo)
	top = strings.TrimSuffix(top, "/s")
	for _, tc := range []struct {
		name  string
		send  string
		frame string
		limit session.Limit
	}{
		{"halfFrame", "\x00" + strings.Repeat("x", 30<<10), `c[1008,"Message not received in time"]`, session.LimitMessageReadTimeout},
		{"tooBig", "\x00" + strings.Repeat("x", 65<<10), `c[1009,"Message too big"]`, session.LimitMessageSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, conn, br := hixieDial(t, top, "/s/000/"+newSID()+"/websocket", true)
			if _, err := conn.Write([]byte("12345678")); err != nil { // key3
				t.Fatal(err)
			}
			if _, err := br.Discard(16); err != nil {
				t.Fatal(err)
			}
			if got := hixieRead(t, br); got != "o" {
				t.Fatalf("open frame %q", got)
			}
			start := time.Now()
			if _, err := conn.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			if got := hixieRead(t, br); got != tc.frame {
				t.Fatalf("got %q, want %s", got, tc.frame)
			}
			if b, err := br.Peek(2); err != nil || string(b) != "\xff\x00" {
				t.Fatalf("closing handshake %q %v", b, err)
			}
			if took := time.Since(start); took > timeout+10*time.Second {
				t.Fatalf("closed after %v", took)
			}
			if n := obs.count(tc.limit); n != 1 {
				t.Fatalf("%d %s hits, want 1", n, tc.limit)
			}
		})
	}
}

// TestMessageGatesShutdown: Shutdown ends a message waiting for the budget
// and one half read, with 1001, long before their deadline, and gives
// the budget back.
func TestMessageGatesShutdown(t *testing.T) {
	budget := transport.NewBodyBudget(64 << 10)
	stuck := make(chan struct{})
	defer close(stuck)
	h := transport.New("/s", transport.Options{
		MessageReadTimeout: time.Minute,
		MessageBudget:      budget,
		Session:            session.Options{RecvQueueBytes: 1 << 10},
	}, func(s *session.Session) {
		select { // an application that does not read
		case <-stuck:
		case <-s.Context().Done():
		}
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := wsURL(srv.URL) + "/s/000/"

	holder := dialWS(t, url+newSID()+"/websocket")
	wsRead(t, holder)
	wsWrite(t, holder, `["a"]`)
	wsWrite(t, holder, `["`+strings.Repeat("x", 60<<10)+`"]`) // waits in its 64 KiB
	for end := time.Now().Add(10 * time.Second); budget.InUse() < 60<<10; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the holder's message reserved %d bytes", budget.InUse())
		}
	}
	waiter := dialWS(t, url+newSID()+"/websocket")
	wsRead(t, waiter)
	wsWrite(t, waiter, `["`+strings.Repeat("y", 20<<10)+`"]`) // waits for the budget
	half := dialWS(t, url+newSID()+"/websocket")
	wsRead(t, half)
	if _, err := half.UnderlyingConn().Write(partialFrame(10<<10, 500)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(ctx) }()
	for name, c := range map[string]*websocket.Conn{"holder": holder, "waiter": waiter, "half": half} {
		msgs, ce := closeFrame(t, c)
		if ce.Code != websocket.CloseNormalClosure || len(msgs) != 1 || msgs[0] != `c[1001,"Going away"]` {
			t.Errorf("%s: %.60q then close %d, want c[1001,...] then 1000", name, msgs, ce.Code)
		}
		// Answer, so that the server need not wait CloseWait.
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(5*time.Second))
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	for end := time.Now().Add(10 * time.Second); budget.InUse() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d bytes of the budget still reserved after shutdown", budget.InUse())
		}
	}
}
