package transport

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// TestSharedFrame: a message's frame is shared from its second write on,
// only for that string (address and length): another string with the
// same bytes, a part of it or a batch never gets it.
func TestSharedFrame(t *testing.T) {
	msg := strings.Repeat("hub \"message\" ", 4) // a new string, not a constant
	one := func(m string) *engine.Frame { return &engine.Frame{Kind: session.FrameMessages, Messages: []string{m}} }
	if p := sharedFrame(one(msg)); p != nil {
		t.Fatal("shared on its first write")
	}
	p := sharedFrame(one(msg))
	if p == nil {
		t.Fatal("not shared on its second write")
	}
	if want := len(appendFrame(nil, one(msg))); p.size != want {
		t.Fatalf("size %d, want %d", p.size, want)
	}
	if q := sharedFrame(one(msg)); q != p {
		t.Fatal("a third write built its own frame")
	}
	for _, tc := range []struct {
		name string
		f    *engine.Frame
	}{
		{"same bytes, another string", one(strings.Clone(msg))},
		{"a prefix of it", one(msg[:len(msg)-1])},
		{"a batch", &engine.Frame{Kind: session.FrameMessages, Messages: []string{msg, msg}}},
		{"empty", one("")},
		{"over the size", one(strings.Repeat("x", sharedMaxBytes+1))},
	} {
		// A frame may be built for it (a prefix shares msg's address),
		// but only its own.
		q := sharedFrame(tc.f)
		if q == p || q != nil && (len(tc.f.Messages) != 1 || q.size != len(appendFrame(nil, tc.f)) || q.data != unsafe.StringData(tc.f.Messages[0])) {
			t.Errorf("%s: got the frame of another message %+v", tc.name, q)
		}
	}
}

// TestTextFrame: the frame bytes a shared message is written as are what
// a websocket client reads as that text message, at each header size.
func TestTextFrame(t *testing.T) {
	sizes := []int{1, 125, 126, 0xffff, 0x10000}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for _, n := range sizes {
			if _, err := c.NetConn().Write(appendTextFrame(nil, []byte(strings.Repeat("x", n)))); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, n := range sizes {
		mt, p, err := c.ReadMessage()
		if err != nil || mt != websocket.TextMessage || len(p) != n || strings.Trim(string(p), "x") != "" {
			t.Fatalf("size %d: type %d, %d bytes, %v", n, mt, len(p), err)
		}
	}
}

// TestSharedWire: a batch is written as one websocket message per SockJS
// message, in order, each the a["…"] frame of its message, whether its
// frame is shared, not yet, or its slot is taken by another message; the
// batch's bytes are built once for the connections that write the same
// batch, and only for them.
func TestSharedWire(t *testing.T) {
	msgs := make([]string, 20) // more than fit without collisions
	for i := range msgs {
		msgs[i] = strings.Repeat(string(rune('a'+i)), 100)
	}
	f := &engine.Frame{Kind: session.FrameMessages, Messages: msgs}
	for round := range 3 { // unseen, seen, shared
		wire, sizes, ok := sharedWire(f)
		if !ok || len(sizes) != len(msgs) {
			t.Fatalf("round %d: no wire for a batch", round)
		}
		for i, m := range msgs {
			one := appendFrame(nil, &engine.Frame{Kind: session.FrameMessages, Messages: []string{m}})
			if sizes[i] != len(one) {
				t.Fatalf("round %d: message %d: size %d, want %d", round, i, sizes[i], len(one))
			}
			want := appendTextFrame(nil, one)
			if !strings.HasPrefix(string(wire), string(want)) {
				t.Fatalf("round %d: message %d: got %q, want %q", round, i, wire[:min(len(wire), len(want))], want)
			}
			wire = wire[len(want):]
		}
		if len(wire) != 0 {
			t.Fatalf("round %d: %d bytes after the batch", round, len(wire))
		}
	}
	w1, _, _ := sharedWire(f)
	w2, _, _ := sharedWire(f)
	if &w1[0] != &w2[0] {
		t.Fatal("a batch written twice was built twice")
	}
	other := &engine.Frame{Kind: session.FrameMessages, Messages: append([]string{msgs[0]}, msgs[2:]...)}
	if w3, _, _ := sharedWire(other); len(w3) >= len(w1) {
		t.Fatal("a batch with the same first message got another batch's bytes")
	}
	if _, _, ok := sharedWire(&engine.Frame{Kind: session.FrameMessages, Messages: []string{strings.Clone(msgs[0])}}); ok {
		t.Fatal("a message never written before had a shared wire")
	}
}
