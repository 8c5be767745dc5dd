package transport_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// readerModes are the two ways a websocket is read: parked in the poller
// (the default) and a reader goroutine per connection. Every case below
// must come out the same on both.
var readerModes = []struct {
	name string
	opts transport.Options
}{
	{"poller", transport.Options{}},
	{"goroutines", transport.Options{ReaderGoroutines: true}},
}

// wsFrame is a client frame: masked with a key that changes every byte
// (so that unmasking is checked), unless unmasked.
func wsFrame(fin bool, op byte, payload string, unmasked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mask|byte(n))
	case n < 1<<16:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	out = append(out, key[:]...)
	for i := 0; i < len(payload); i++ {
		out = append(out, payload[i]^key[i&3])
	}
	return out
}

func closePayload(code int, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, uint16(code))) + reason
}

// wsEvents reads what the server sends until its close frame (or the
// connection's end), or until n events came (n >= 0): "msg:<text>",
// "pong:<payload>", "close:<code>".
func wsEvents(t *testing.T, c *websocket.Conn, n int) []string {
	t.Helper()
	var ev []string
	c.SetPongHandler(func(p string) error { ev = append(ev, "pong:"+p); return nil })
	c.SetCloseHandler(func(int, string) error { return nil })
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for n < 0 || len(ev) < n {
		_, m, err := c.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			return append(ev, fmt.Sprintf("close:%d", ce.Code))
		case err != nil:
			return append(ev, "end")
		}
		ev = append(ev, "msg:"+string(m))
	}
	return ev
}

// TestWebSocketFrameReader: the frame reader takes frames cut anywhere
// (written a byte at a time), fragmented messages with control frames
// between their fragments, and refuses what RFC 6455 forbids as gorilla
// does, on both reader paths.
func TestWebSocketFrameReader(t *testing.T) {
	big := strings.Repeat("y", 300)
	for _, tc := range []struct {
		name     string
		sockjs   bool
		frames   [][]byte
		byByte   bool
		after    [][]byte // sent once every event of want but the last came
		want     []string
		maxBytes int
	}{
		{name: "fragmentedWithPing", byByte: true, frames: [][]byte{
			wsFrame(false, 1, "hel", false), wsFrame(true, 9, "p", false), wsFrame(false, 0, "", false),
			wsFrame(true, 0, "lo", false), wsFrame(true, 1, "", false), wsFrame(true, 1, big, false),
		}, after: [][]byte{wsFrame(true, 8, closePayload(4000, "bye"), false)}, want: []string{"pong:p", "msg:hello", "msg:", "msg:" + big, "close:4000"}},
		{name: "fragmentedWithPingWhole", frames: [][]byte{ // headers read in place, several frames to a read
			wsFrame(false, 1, "hel", false), wsFrame(true, 9, "p", false), wsFrame(false, 0, "", false),
			wsFrame(true, 0, "lo", false), wsFrame(true, 1, "", false), wsFrame(true, 1, big, false),
		}, after: [][]byte{wsFrame(true, 8, closePayload(4000, "bye"), false)}, want: []string{"pong:p", "msg:hello", "msg:", "msg:" + big, "close:4000"}},
		{name: "sockjsFragmented", sockjs: true, byByte: true, frames: [][]byte{
			wsFrame(false, 1, `["a",`, false), wsFrame(true, 0, `"b"]`, false),
		}, after: [][]byte{wsFrame(true, 8, "", false)}, want: []string{"msg:o", `msg:a["a","b"]`, "close:1000"}},
		{name: "badOpcode", frames: [][]byte{wsFrame(true, 3, "", false)}, want: []string{"close:1002"}},
		{name: "unmasked", frames: [][]byte{wsFrame(true, 1, "x", true)}, want: []string{"close:1002"}},
		{name: "rsv", frames: [][]byte{{0xC1, 0x80, 0, 0, 0, 0}}, want: []string{"close:1002"}},
		{name: "continuationFirst", frames: [][]byte{wsFrame(true, 0, "x", false)}, want: []string{"close:1002"}},
		{name: "dataBeforeFin", frames: [][]byte{wsFrame(false, 1, "x", false), wsFrame(true, 1, "y", false)}, want: []string{"close:1002"}},
		{name: "longControl", frames: [][]byte{wsFrame(true, 9, big, false)}, want: []string{"close:1002"}},
		{name: "fragmentedControl", frames: [][]byte{wsFrame(false, 9, "p", false)}, want: []string{"close:1002"}},
		{name: "badCloseCode", frames: [][]byte{wsFrame(true, 8, closePayload(1005, ""), false)}, want: []string{"close:1002"}},
		{name: "badCloseReason", frames: [][]byte{wsFrame(true, 8, closePayload(1000, "\xff"), false)}, want: []string{"close:1002"}},
		{name: "shortClose", frames: [][]byte{wsFrame(true, 8, "x", false)}, want: []string{"close:1000"}},
		{name: "invalidUTF8", frames: [][]byte{wsFrame(true, 1, "\xff", false)}, want: []string{"close:1007"}},
		{name: "binary", frames: [][]byte{wsFrame(true, 2, "\xff", false)}, want: []string{"close:1003"}},
		{name: "brokenJSON", sockjs: true, frames: [][]byte{wsFrame(true, 1, `["a`, false)}, want: []string{"msg:o", "close:3000"}},
		{name: "tooBig", maxBytes: 100, frames: [][]byte{
			wsFrame(true, 1, "ok", false), wsFrame(false, 1, big[:60], false), wsFrame(true, 0, big[:60], false),
		}, want: []string{"msg:ok", "close:1009"}},
		{name: "tooBigSockJS", sockjs: true, maxBytes: 100, frames: [][]byte{wsFrame(true, 1, `["`+big+`"]`, false)},
			want: []string{"msg:o", `msg:c[1009,"Message too big"]`, "close:1009"}},
		{name: "atTheLimit", maxBytes: 300, frames: [][]byte{wsFrame(true, 1, big, false)}, after: [][]byte{wsFrame(true, 8, "", false)},
			want: []string{"msg:" + big, "close:1000"}},
	} {
		for _, mode := range readerModes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				opts := mode.opts
				opts.MaxMessageBytes = tc.maxBytes
				base := serveOne(t, opts, services.Echo)
				path := "/websocket"
				if tc.sockjs {
					path = "/000/" + newSID() + "/websocket"
				}
				c := dialWS(t, wsURL(base)+path)
				nc := c.UnderlyingConn()
				for _, f := range tc.frames {
					if !tc.byByte {
						if _, err := nc.Write(f); err != nil {
							t.Fatal(err)
						}
						continue
					}
					for i := range f {
						if _, err := nc.Write(f[i : i+1]); err != nil {
							t.Fatal(err)
						}
					}
				}
				var got []string
				if len(tc.after) > 0 {
					got = wsEvents(t, c, len(tc.want)-1)
					for _, f := range tc.after {
						if _, err := nc.Write(f); err != nil {
							t.Fatal(err)
						}
					}
				}
				got = append(got, wsEvents(t, c, -1)...)
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Fatalf("got %q\nwant %q", got, tc.want)
				}
			})
		}
	}
}

// countingListener wraps its connections, as cmd/server's connection
// caps do: read-transparent ones say so (UnwrapConn), opaque ones do not.
type countingListener struct {
	net.Listener
	transparent bool
}

type countedConn struct{ net.Conn }

type transparentConn struct{ net.Conn }

func (c transparentConn) UnwrapConn() net.Conn { return c.Conn }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || !l.transparent {
		return countedConn{c}, err
	}
	return transparentConn{c}, nil
}

// TestIdleWebSocketsHoldNoGoroutine: idle websocket sessions of a service
// with no goroutine of its own (services.Echo) hold no goroutine when
// parked in the poller, also behind a listener's read-transparent
// wrapper, and one each (the reader) without the poller or behind a
// wrapper that may read; the parked ones still echo.
func TestIdleWebSocketsHoldNoGoroutine(t *testing.T) {
	const n = 100
	modes := []struct {
		name   string
		opts   transport.Options
		wrap   *countingListener
		parked bool
	}{
		{"poller", transport.Options{}, nil, true},
		{"goroutines", transport.Options{ReaderGoroutines: true}, nil, false},
		{"transparentWrapper", transport.Options{}, &countingListener{transparent: true}, true},
		{"opaqueWrapper", transport.Options{}, &countingListener{}, false},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			r := mux.NewRouter()
			r.SkipClean(true)
			gorillamux.Mount(r, transport.New("/s", mode.opts, services.Echo))
			srv := httptest.NewUnstartedServer(r)
			if mode.wrap != nil {
				mode.wrap.Listener = srv.Listener
				srv.Listener = mode.wrap
			}
			srv.Start()
			t.Cleanup(srv.Close)
			base := srv.URL + "/s"
			start := runtime.NumGoroutine()
			conns := make([]*websocket.Conn, n)
			for i := range conns {
				path, msg, echo := "/websocket", "hi", "hi"
				if i%2 == 0 {
					path, msg, echo = "/000/"+newSID()+"/websocket", `["hi"]`, `a["hi"]`
				}
				conns[i] = dialWS(t, wsURL(base)+path)
				if i%2 == 0 {
					wsRead(t, conns[i]) // o
				}
				// Each session echoes (read once) before it idles.
				wsWrite(t, conns[i], msg)
				if got := wsRead(t, conns[i]); got != echo {
					t.Fatalf("session %d: echo %q, want %q", i, got, echo)
				}
			}
			// net/http's connection goroutines end after the upgrade,
			// and the poller's readers once the socket is empty:
			// bounded wait for the count to settle. Goroutines of
			// earlier tests (and modes) that are still ending only
			// lower the count; the readers are counted by their stack.
			readers := func() int { return goroutinesIn("transport.(*Handler).readWebSocket") }
			perSession := func() float64 { return float64(runtime.NumGoroutine()-start) / n }
			settled := func() bool { return perSession() <= 0.1 && readers() == 0 }
			if !mode.parked {
				settled = func() bool { return readers() >= n }
			}
			deadline := time.Now().Add(20 * time.Second)
			for !settled() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // polling a count; bounded
			}
			if !settled() {
				t.Fatalf("%.2f goroutines per idle websocket session, %d readers", perSession(), readers())
			}
		})
	}
}

// goroutinesIn counts the goroutines whose stack has fn.
func goroutinesIn(fn string) int { return testenv.GoroutinesIn(fn) }

// TestIdleStreamsHoldNoGoroutine: idle xhr-streaming answers, taken over
// from net/http, hold no watch goroutine when parked in the poller and
// one each without it; either way a client that leaves is
// noticed: the session closes with 1002, and a new streaming request
// gets that close frame rather than 2010 (another connection still
// open).
func TestIdleStreamsHoldNoGoroutine(t *testing.T) {
	const n = 50
	for _, mode := range readerModes {
		t.Run(mode.name, func(t *testing.T) {
			base := serveOne(t, mode.opts, services.Echo)
			urls := make([]string, n)
			bodies := make([]io.Closer, n)
			for i := range urls {
				urls[i] = base + "/000/" + newSID()
				res, br := openStream(t, "POST", urls[i]+"/xhr_streaming")
				frameLine(t, br, "")
				bodies[i] = res.Body
			}
			// The client's transport has goroutines of its own for
			// each connection: the server's are counted by their stack
			// (net/http's serving goroutine ends with the take-over).
			watchers := func() int { return goroutinesIn("transport.(*streamConn).watch") }
			settled := func() bool { return watchers() == 0 }
			if mode.name != "poller" {
				settled = func() bool { return watchers() >= n }
			}
			deadline := time.Now().Add(20 * time.Second)
			for !settled() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // polling a count; bounded
			}
			if !settled() {
				t.Fatalf("%d watch goroutines for %d idle streaming sessions", watchers(), n)
			}
			// The clients leave; each session notices.
			for _, b := range bodies {
				b.Close()
			}
			for i, u := range urls {
				deadline := time.Now().Add(20 * time.Second)
				for {
					_, br := openStream(t, "POST", u+"/xhr_streaming")
					f, _ := tryFrameLine(br, "")
					if strings.HasPrefix(f, "c[1002,") {
						break
					}
					if !strings.HasPrefix(f, "c[2010,") || time.Now().After(deadline) {
						t.Fatalf("session %d after its client left: %q, want c[1002,...]", i, f)
					}
					time.Sleep(10 * time.Millisecond) // the close is on its way; bounded
				}
			}
		})
	}
}

// TestPollerStartsAndStops: one websocket at a time, opened, sent a
// message and closed by the client at once: the poller's epoll set is
// opened with the first parked connection and closed with the last,
// again and again, while the closing connection's events (its message,
// then its end) are still being handed out; every next connection is
// served.
func TestPollerStartsAndStops(t *testing.T) {
	base := serveOne(t, transport.Options{}, services.Echo)
	for i := 0; i < 300; i++ {
		c := dialWS(t, wsURL(base)+"/websocket")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if i%3 == 0 {
			wsWrite(t, c, "hi")
			if got := wsRead(t, c); got != "hi" {
				t.Fatalf("connection %d: echo %q", i, got)
			}
		} else {
			wsWrite(t, c, "bye")
		}
		c.Close()
	}
}

// TestBusyWebSocketKeepsItsReader: a parked websocket whose client keeps
// sending is read by one goroutine that waits in the runtime's poller
// (pollConn.active) rather than a goroutine started per message; once
// the client is quiet the goroutine ends (the connection is parked
// again, holding none), and the parked connection still echoes, and
// becomes active again.
func TestBusyWebSocketKeepsItsReader(t *testing.T) {
	base := serveOne(t, transport.Options{}, services.Echo)
	c := dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
	wsRead(t, c) // o
	echo := func(i int) {
		t.Helper()
		m := fmt.Sprintf("m%d", i)
		wsWrite(t, c, `["`+m+`"]`)
		if got := wsRead(t, c); got != `a["`+m+`"]` {
			t.Fatalf("echo %q, want a[%q]", got, m)
		}
	}
	// Readers of earlier tests' connections that are still open (a
	// reader waiting for an application that does not receive) are
	// counted too, and only end: ours is what comes above them.
	active := func() int { return goroutinesIn("transport.(*pollConn).active") }
	readers := func() int { return goroutinesIn("transport.(*pollConn).burst") }
	baseActive, baseReaders := active(), readers()
	for round := range 2 {
		// Echo until the reader is seen active, bounded.
		deadline := time.Now().Add(20 * time.Second)
		i := 0
		for active() <= baseActive {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d echoes and no active reader", round, i)
			}
			echo(i)
			i++
		}
		// Quiet: the reader ends, within its linger (a second or two)
		// and a generous bound for a loaded machine.
		deadline = time.Now().Add(20 * time.Second)
		for readers() > baseReaders {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d readers with a quiet connection, want at most the %d of earlier tests", round, readers(), baseReaders)
			}
			time.Sleep(20 * time.Millisecond) // polling a count; bounded
		}
		echo(-1)
	}
}

// TestWebSocketTooBigByHeader: a parked websocket refuses a frame whose
// header says it takes the message past MaxMessageBytes at once, with
// 1009, before any of its payload came and without the message budget
// (4 KiB here, far less than a limit's worth): reading a limit's worth
// first would wait for bytes that never come, past the payload deadline.
// The goroutine path reads through gorilla, which does not say a frame's
// length, and refuses the message once a byte over the limit came.
func TestWebSocketTooBigByHeader(t *testing.T) {
	opts := transport.Options{
		MaxMessageBytes:    1 << 20,
		MessageBudget:      transport.NewBodyBudget(4 << 10),
		MessageReadTimeout: time.Minute,
	}
	base := serveOne(t, opts, services.Echo)
	c := dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
	hdr := []byte{0x81, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, 2<<20)
	hdr = append(hdr, 0x11, 0x22, 0x33, 0x44)
	if _, err := c.UnderlyingConn().Write(hdr); err != nil {
		t.Fatal(err)
	}
	want := []string{"msg:o", `msg:c[1009,"Message too big"]`, "close:1009"}
	if got := wsEvents(t, c, -1); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
