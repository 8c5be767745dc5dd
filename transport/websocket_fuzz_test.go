package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// memConn is a server's side of a websocket whose client sent b: reads
// give b then EOF; writes (the handshake's answer, pongs, close frames)
// are dropped.
type memConn struct{ r *bytes.Reader }

func (c memConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (memConn) Close() error                     { return nil }
func (memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (memConn) SetDeadline(time.Time) error      { return nil }
func (memConn) SetReadDeadline(time.Time) error  { return nil }
func (memConn) SetWriteDeadline(time.Time) error { return nil }

// hijacker is a ResponseWriter whose connection is a memConn.
type hijacker struct {
	*httptest.ResponseRecorder
	conn memConn
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// readAllWebSocket upgrades a websocket whose client sent frames and reads
// its messages with readMessage until it fails, as readWebSocket does.
func readAllWebSocket(tb testing.TB, frames []byte, limit int) (msgs [][]byte, types []int, err error) {
	req := httptest.NewRequest("GET", "/echo/websocket", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	conn, uerr := up.Upgrade(hijacker{httptest.NewRecorder(), memConn{bytes.NewReader(frames)}}, req, nil)
	if uerr != nil {
		tb.Fatalf("upgrade: %v", uerr)
	}
	m := testMsgReader(limit)
	for {
		mt, data, err := readWSMessage(context.Background(), conn, &m)
		if err == nil {
			msgs, types = append(msgs, bytes.Clone(data)), append(types, mt)
		}
		m.done()
		if n := m.budget.InUse(); n != 0 {
			tb.Fatalf("%d bytes of the message budget still reserved after done", n)
		}
		if err != nil {
			return msgs, types, err
		}
	}
}

// clientFrame is one masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n < 1<<16:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

// FuzzReadWebSocketMessage: whatever bytes a client sends after the
// handshake, the RFC 6455 reader ends with an error once they run out
// (never loops or panics), every message it returns is text or binary
// within the limit, a message past the limit is errTooBig, and the
// messages hold no more bytes than were sent.
func FuzzReadWebSocketMessage(f *testing.F) {
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	for _, seed := range [][]byte{
		clientFrame(true, websocket.TextMessage, []byte(`["hello"]`)),
		clientFrame(true, websocket.BinaryMessage, []byte{0, 1, 2}),
		clientFrame(true, websocket.TextMessage, nil),
		// Fragmented, with a ping between the fragments.
		cat(clientFrame(false, websocket.TextMessage, []byte("ab")), clientFrame(true, websocket.PingMessage, []byte("p")), clientFrame(true, 0, []byte("cd"))),
		// Past the limit, in one frame and in fragments.
		clientFrame(true, websocket.TextMessage, bytes.Repeat([]byte("x"), 65)),
		cat(clientFrame(false, websocket.TextMessage, bytes.Repeat([]byte("x"), 40)), clientFrame(true, 0, bytes.Repeat([]byte("y"), 40))),
		// A 16-bit and a 64-bit length, longer than what follows.
		{0x81, 0x80 | 126, 0xff, 0xff, 1, 2, 3, 4, 'a'},
		{0x81, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
		// Unmasked, reserved bits, an unknown opcode, a continuation
		// with nothing to continue, a fragmented control frame.
		{0x81, 0x02, 'h', 'i'},
		cat([]byte{0xf1}, clientFrame(true, websocket.TextMessage, []byte("x"))[1:]),
		clientFrame(true, 0x3, []byte("x")),
		clientFrame(true, 0, []byte("x")),
		clientFrame(false, websocket.PingMessage, nil),
		// A close frame, with and without a reason, then more.
		cat(clientFrame(true, websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye")), clientFrame(true, websocket.TextMessage, []byte("late"))),
		clientFrame(true, websocket.CloseMessage, []byte{0x03}),
		clientFrame(true, websocket.TextMessage, []byte{0xc3, 0x28}), // not UTF-8
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frames []byte) {
		const limit = 64
		msgs, types, err := readAllWebSocket(t, frames, limit)
		if err == nil {
			t.Fatal("reading ended without an error")
		}
		total := 0
		for i, m := range msgs {
			if len(m) > limit {
				t.Fatalf("message of %d bytes past the limit %d", len(m), limit)
			}
			if types[i] != websocket.TextMessage && types[i] != websocket.BinaryMessage {
				t.Fatalf("message of type %d", types[i])
			}
			total += len(m)
		}
		if total > len(frames) {
			t.Fatalf("%d message bytes out of %d bytes sent", total, len(frames))
		}
	})
}

// TestReadWebSocketMessageSeeds pins what the fuzz target's seeds show: a
// message past the limit is refused as such, whole or in fragments, and
// fragments around a ping make one message.
func TestReadWebSocketMessageSeeds(t *testing.T) {
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	msgs, _, err := readAllWebSocket(t, cat(clientFrame(false, websocket.TextMessage, []byte("ab")), clientFrame(true, websocket.PingMessage, []byte("p")), clientFrame(true, 0, []byte("cd"))), 64)
	if len(msgs) != 1 || string(msgs[0]) != "abcd" || err == nil {
		t.Fatalf("fragments: %q, %v", msgs, err)
	}
	for _, frames := range [][]byte{
		clientFrame(true, websocket.TextMessage, bytes.Repeat([]byte("x"), 65)),
		cat(clientFrame(false, websocket.TextMessage, bytes.Repeat([]byte("x"), 40)), clientFrame(true, 0, bytes.Repeat([]byte("y"), 40))),
	} {
		if msgs, _, err := readAllWebSocket(t, frames, 64); len(msgs) != 0 || !errors.Is(err, errTooBig) {
			t.Fatalf("past the limit: %q, %v", msgs, err)
		}
	}
}

// TestReadWebSocketMessageAtLimit: a message of exactly the limit passes
// and one byte more is errTooBig, below and past the pooled 4 KiB buffer,
// in one frame and in fragments.
func TestReadWebSocketMessageAtLimit(t *testing.T) {
	for _, limit := range []int{64, msgSmall, 10000, 300 << 10} {
		for _, size := range []int{limit - 1, limit, limit + 1} {
			payload := bytes.Repeat([]byte("x"), size)
			half := size / 2
			for name, frames := range map[string][]byte{
				"frame":     clientFrame(true, websocket.TextMessage, payload),
				"fragments": append(clientFrame(false, websocket.TextMessage, payload[:half]), clientFrame(true, 0, payload[half:])...),
			} {
				msgs, _, err := readAllWebSocket(t, frames, limit)
				if size > limit {
					if len(msgs) != 0 || !errors.Is(err, errTooBig) {
						t.Fatalf("limit %d, %s of %d: %d messages, %v; want errTooBig", limit, name, size, len(msgs), err)
					}
					continue
				}
				if len(msgs) != 1 || !bytes.Equal(msgs[0], payload) {
					t.Fatalf("limit %d, %s of %d: %d messages (%v), want it whole", limit, name, size, len(msgs), err)
				}
			}
		}
	}
}
