package transport

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// Streaming responses (xhr-streaming, eventsource, htmlfile) on their own
// connection. Served by net/http, an idle streaming session held the
// server's connection goroutine parked deep in the handler, its 4 KiB read
// and write buffers, the request, and the background reader net/http runs
// to notice a client leaving: about 34 KB per idle session. An HTTP/1.1
// streaming response is instead taken over (hijacked) once its headers
// are decided: the answer is written as chunks straight to the connection
// by the session's pumps (session.ServeConn), the connection waits in
// the kernel's poller for the client to leave (streampoll.go; a small
// goroutine where it cannot), and the request is let go. The answer says
// "Connection: close": the client opens a new connection for its next
// streaming request, as it would after a proxy's.
//
// HTTP/2 and HTTP/1.0 answers, and ResponseWriters that cannot be taken
// over, are streamed by net/http as before (httpReceiver).

// stream answers a streaming request for s: the headers (with
// contentType), the prelude, then the session's frames encoded by enc.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, s *engine.Session, t session.Transport, contentType string, enc encoder, prelude []byte) {
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	// Proxies such as nginx buffer responses unless told not to, which
	// would make streaming transports time out on the client.
	setHeader(hd, "X-Accel-Buffering", hdrNoBuffering)
	noCache(w)
	if sc := h.takeOver(w, r, t, enc, prelude); sc != nil {
		report := h.takeOverReport(w)
		h.active.Add(1)
		sp := h.parkStream(sc, s) // streampoll.go
		if sp == nil {
			go sc.watch(s)
		}
		s.ServeConn(sc, func() {
			defer h.active.Add(-1)
			_ = sc.conn.Close()
			if sp != nil {
				sp.wake() // the poller does not report a socket closed here
			}
			report()
		})
		return
	}
	w.WriteHeader(http.StatusOK)
	rcv := h.newHTTPReceiver(w, r, t, enc, true)
	if rcv.writeRaw(prelude) != nil {
		return
	}
	h.serve(s, rcv)
}

// takeOver hijacks r's connection and writes the answer's head and the
// prelude, or returns nil (nothing written) when the answer must stay
// with net/http.
func (h *Handler) takeOver(w http.ResponseWriter, r *http.Request, t session.Transport, enc encoder, prelude []byte) *streamConn {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || h.opts.NoHijack {
		return nil
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	// The server's read and write deadlines (slow headers, slow bodies)
	// stay on a hijacked connection: ours are set per write.
	_ = conn.SetDeadline(time.Time{})
	sc := &streamConn{conn: conn, enc: enc, limit: h.opts.ResponseLimit, timeout: h.opts.WriteTimeout, gone: make(chan struct{}), t: t, obs: h.obs}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = w.Header().Write(&head)
	head.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	b := appendChunk(head.Bytes(), prelude)
	_ = conn.SetWriteDeadline(time.Now().Add(sc.timeout))
	if _, err := conn.Write(b); err != nil {
		_ = conn.Close()
		return nil
	}
	return sc
}

// appendChunk appends p as one HTTP/1.1 chunk.
func appendChunk(dst, p []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(p)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, p...)
	return append(dst, '\r', '\n')
}

// chunkRoom is the space kept before an encoded frame for its chunk
// header: up to 8 hex digits and CRLF.
const chunkRoom = 10

// lastChunk ends a chunked answer.
const lastChunk = "0\r\n\r\n"

// streamConn is a streaming answer on a hijacked connection: each frame
// is one chunk, written by the session's pump; the answer ends (last
// chunk) with the close frame or once ResponseLimit bytes were written.
type streamConn struct {
	conn    net.Conn
	enc     encoder
	written int
	limit   int
	timeout time.Duration
	gone    chan struct{}
	once    sync.Once
	ended   atomic.Bool // the last chunk is written or on its way
	t       session.Transport
	obs     session.Observer
}

func (sc *streamConn) Gone() <-chan struct{} { return sc.gone }

func (sc *streamConn) WriteFrame(f *engine.Frame) (bool, error) {
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], make([]byte, chunkRoom)...)
	b = sc.enc(b, f)
	n := len(b) - chunkRoom
	var hex [8]byte
	hx := strconv.AppendInt(hex[:0], int64(n), 16)
	start := chunkRoom - 2 - len(hx)
	copy(b[start:], hx)
	b[chunkRoom-2], b[chunkRoom-1] = '\r', '\n'
	b = append(b, '\r', '\n')
	sc.written += n
	done := f.Kind == session.FrameClose || f.Last || sc.written >= sc.limit
	if done {
		b = append(b, lastChunk...)
		// The client may close the connection as soon as it has the
		// last chunk, before the session let go of this receiver:
		// that is not a client leaving.
		sc.ended.Store(true)
	}
	_ = sc.conn.SetWriteDeadline(time.Now().Add(sc.timeout))
	_, err := sc.conn.Write(b[start:])
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	if err != nil {
		return true, err
	}
	sc.obs.FrameWritten(sc.t, f.Kind, len(f.Messages), n)
	return done, nil
}

// watch waits for the client to leave (or the connection to be closed
// once the answer ended), reading and dropping anything it sends, and
// then tells the session, which closes with 1002 if this answer was
// still attached.
func (sc *streamConn) watch(s *engine.Session) {
	buf := make([]byte, 64)
	for {
		if _, err := sc.conn.Read(buf); err != nil {
			break
		}
	}
	sc.left(s)
}

// left tells the session that the connection ended, if that was before
// the answer did: the client left.
func (sc *streamConn) left(s *engine.Session) {
	if !sc.ended.Load() {
		sc.once.Do(func() { close(sc.gone) })
		s.ConnLost(sc)
	}
}
