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
	data  *byte // the message's bytes
	n     int
	pm    *websocket.PreparedMessage // for connections without an nbConn (TLS)
	wire  []byte                     // the websocket frame: header and the SockJS frame
	size  int                        // the SockJS frame's length, for Observer.FrameWritten
	sizes [1]int                     // size, as sharedWire's sizes
}

type sharedSlot struct {
	seen  atomic.Pointer[byte] // the last message written here uncached
	entry atomic.Pointer[sharedEntry]
}

// sharedFrames is the cache. 16 slots: enough for the few messages
// being fanned out at any one time (a batch of them is shared whole:
// sharedBatches).
var sharedFrames [16]sharedSlot

// sharedSlotOf is the slot of a message's bytes at p: a multiplicative
// hash of the address, whose low bits alone repeat with the allocator's
// size classes (consecutive 128-byte strings took 2 of 16 slots).
func sharedSlotOf(p *byte) *sharedSlot {
	h := uint64(uintptr(unsafe.Pointer(p))) * 0x9e3779b97f4a7c15
	return &sharedFrames[h>>60]
}

// sharedMaxBytes: longer messages are not kept (the cache would pin 16 of
// them).
const sharedMaxBytes = 64 << 10

// sharedFrame returns the shared frame of f, a message frame, when its one
// message was written before; nil otherwise.
func sharedFrame(f *engine.Frame) *sharedEntry {
	if f.Kind != session.FrameMessages || len(f.Messages) != 1 {
		return nil
	}
	return sharedMessage(f.Messages[0])
}

// sharedMessage is the shared frame of the one-message frame of msg when
// msg was written before; nil otherwise.
func sharedMessage(msg string) *sharedEntry {
	if len(msg) == 0 || len(msg) > sharedMaxBytes {
		return nil
	}
	p := unsafe.StringData(msg)
	slot := sharedSlotOf(p)
	if e := slot.entry.Load(); e != nil && e.data == p && e.n == len(msg) {
		return e
	}
	if slot.seen.Swap(p) != p {
		return nil // the first time: the caller encodes it itself
	}
	frame := appendFrame(make([]byte, 0, len(msg)+8), &engine.Frame{Kind: session.FrameMessages, Messages: []string{msg}})
	wire := appendTextFrame(make([]byte, 0, len(frame)+10), frame)
	// The prepared message reads the SockJS frame inside wire: one copy.
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, wire[len(wire)-len(frame):])
	if err != nil {
		return nil
	}
	e := &sharedEntry{data: p, n: len(msg), pm: pm, wire: wire, size: len(frame), sizes: [1]int{len(frame)}}
	slot.entry.Store(e)
	return e
}

// appendTextFrame appends payload as a server's websocket frame: one
// final text frame, unmasked, uncompressed (RFC 6455 5.2).
func appendTextFrame(b, payload []byte) []byte {
	n := len(payload)
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

// sharedWire is what a connection writes for f, a message frame, when
// each of its messages has a shared frame: that frame's bytes, or for
// several messages (a fan-out catching up: engine's SendMany) their
// frames one after the other, a websocket message each, for one write;
// sizes are the SockJS frames' lengths (for Observer.FrameWritten). ok
// is false when the one message has none (f is then encoded for this
// connection alone). Both are shared: read only.
func sharedWire(f *engine.Frame) (wire []byte, sizes []int, ok bool) {
	if f.Kind != session.FrameMessages || len(f.Messages) == 0 {
		return nil, nil, false
	}
	if len(f.Messages) == 1 {
		if p := sharedMessage(f.Messages[0]); p != nil {
			return p.wire, p.sizes[:], true
		}
		return nil, nil, false
	}
	b := sharedBatchOf(f.Messages)
	return b.wire, b.sizes, true
}

// A batch (the same few publishes given to every subscriber of a channel
// whose fan-out fell behind) is shared as a whole too: its messages'
// frames one after the other, built by the first connection that writes
// it and found by the others from its first message's address, then
// checked message by message. Without it each connection looked up each
// message, and messages of one batch that took one slot of sharedFrames
// evicted each other there, each connection then quoting one of them
// itself (10 % of the server's CPU in appendQuoted, pprof).
type sharedBatch struct {
	data  []*byte // each message's bytes
	n     []int
	wire  []byte
	sizes []int
}

// sharedBatches is the batches' cache, direct-mapped like sharedFrames.
var sharedBatches [16]atomic.Pointer[sharedBatch]

// sharedBatchOf is the shared batch of msgs, built (and kept for the next
// connections) if the cache does not have it.
func sharedBatchOf(msgs []string) *sharedBatch {
	h := uint64(uintptr(unsafe.Pointer(unsafe.StringData(msgs[0])))) * 0x9e3779b97f4a7c15
	slot := &sharedBatches[h>>60]
	if b := slot.Load(); b != nil && b.is(msgs) {
		return b
	}
	b := &sharedBatch{data: make([]*byte, len(msgs)), n: make([]int, len(msgs)), sizes: make([]int, len(msgs))}
	for i, m := range msgs {
		b.data[i], b.n[i] = unsafe.StringData(m), len(m)
		if p := sharedMessage(m); p != nil {
			b.wire = append(b.wire, p.wire...)
			b.sizes[i] = p.size
			continue
		}
		// Not shared (yet, or its slot taken by another message): its
		// own frame, in the same write.
		one := appendFrame(nil, &engine.Frame{Kind: session.FrameMessages, Messages: []string{m}})
		b.wire = appendTextFrame(b.wire, one)
		b.sizes[i] = len(one)
	}
	if len(b.wire) <= sharedMaxBytes {
		slot.Store(b)
	}
	return b
}

// is reports whether b is the batch of msgs: the same strings (address
// and length), in order.
func (b *sharedBatch) is(msgs []string) bool {
	if len(b.data) != len(msgs) {
		return false
	}
	for i, m := range msgs {
		if b.data[i] != unsafe.StringData(m) || b.n[i] != len(m) {
			return false
		}
	}
	return true
}

// observeShared reports the frames written by sharedWire, whose SockJS
// frames' lengths are sizes: one websocket message each, a["…"].
func (wr *wsReceiver) observeShared(kind engine.FrameKind, sizes []int) {
	for _, n := range sizes {
		wr.h.obs.FrameWritten(wr.t, kind, 1, n)
	}
}
