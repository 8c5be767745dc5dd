package transport

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// One message written to many websocket sessions (a hub publish: the
// hub sends one string to every subscriber) is encoded once: its SockJS
// frame a["…"] and the websocket frame around it are built the second
// time the message is written and shared by every later write, through
// gorilla's PreparedMessage. Measured with hub.BenchmarkHubFanOut:
// quoting the message per subscriber was 7 % of the server's CPU, and
// WriteMessage's write buffer from the pool one allocation per delivery.
//
// A message is known by its string's bytes in memory (address and
// length), not by comparing contents: strings are immutable, and an
// entry holds its string, so no other string can have its address while
// the entry lives. The cache is small and direct-mapped by address; a
// message seen once costs one atomic swap, and only a frame of one
// message is shared (a batch of several is one session's own).
//
// A connection gorilla writes through an nbConn (wsconn.go) is given the
// websocket frame's bytes (wire) directly, in one nbConn write, rather
// than through gorilla's WritePreparedMessage: a server's frame of a text
// message is the same bytes for every connection (unmasked; this server
// never negotiates compression: the upgrader does not enable it), and
// gorilla's write lock, error lock, write deadline and the prepared
// message's own lock and map were, with the nbConn's, a fifth of the
// non-system-call CPU of a hub delivery (perf, pprof: bench-profile).
// What gorilla's lock kept out, a data frame after a close frame, the
// nbConn refuses itself (nbConn.WriteData); only the session's one
// writer writes data frames, so they never interleave.
type sharedEntry struct {
	data *byte // the message's bytes
	n    int
	pm   *websocket.PreparedMessage // for connections without an nbConn (TLS)
	wire []byte                     // the websocket frame: header and the SockJS frame
	size int                        // the SockJS frame's length, for Observer.FrameWritten
}

type sharedSlot struct {
	seen  atomic.Pointer[byte] // the last message written here uncached
	entry atomic.Pointer[sharedEntry]
}

// sharedFrames is the cache. 16 slots: enough for the few messages
// being fanned out at any one time.
var sharedFrames [16]sharedSlot

// sharedMaxBytes: longer messages are not kept (the cache would pin 16 of
// them).
const sharedMaxBytes = 64 << 10

// sharedFrame returns the shared frame of f, a message frame, when its one
// message was written before; nil otherwise.
func sharedFrame(f *engine.Frame) *sharedEntry {
	if f.Kind != session.FrameMessages || len(f.Messages) != 1 {
		return nil
	}
	msg := f.Messages[0]
	if len(msg) == 0 || len(msg) > sharedMaxBytes {
		return nil
	}
	p := unsafe.StringData(msg)
	slot := &sharedFrames[uintptr(unsafe.Pointer(p))>>4%uintptr(len(sharedFrames))]
	if e := slot.entry.Load(); e != nil && e.data == p && e.n == len(msg) {
		return e
	}
	if slot.seen.Swap(p) != p {
		return nil // the first time: the caller encodes it itself
	}
	frame := appendFrame(make([]byte, 0, len(msg)+8), f)
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, frame)
	if err != nil {
		return nil
	}
	e := &sharedEntry{data: p, n: len(msg), pm: pm, wire: textFrame(frame), size: len(frame)}
	slot.entry.Store(e)
	return e
}

// textFrame is payload as a server's websocket frame: one final text
// frame, unmasked, uncompressed (RFC 6455 5.2).
func textFrame(payload []byte) []byte {
	n := len(payload)
	b := make([]byte, 0, n+10)
	b = append(b, 0x81) // FIN, text
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}
