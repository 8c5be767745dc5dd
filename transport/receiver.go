package transport

import (
	"context"
	"fmt"
	"github.com/sockjsd/sockjsd/internal/engine"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// encoder wraps a protocol frame in one transport's wire format.
type encoder func(dst []byte, f *engine.Frame) []byte

// httpReceiver delivers frames over an HTTP response: once for polling
// transports, until ResponseLimit bytes for streaming ones.
type httpReceiver struct {
	w         http.ResponseWriter
	rc        http.ResponseController // a value: no allocation of its own
	enc       encoder
	streaming bool
	written   int
	limit     int
	timeout   time.Duration
	gone      <-chan struct{}
	t         session.Transport
	obs       session.Observer
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (h *Handler) newHTTPReceiver(w http.ResponseWriter, r *http.Request, t session.Transport, enc encoder, streaming bool) *httpReceiver {
	hr := new(httpReceiver)
	h.initHTTPReceiver(hr, w, r, t, enc, streaming)
	return hr
}

// initHTTPReceiver sets up hr, which may be part of a larger receiver.
func (h *Handler) initHTTPReceiver(hr *httpReceiver, w http.ResponseWriter, r *http.Request, t session.Transport, enc encoder, streaming bool) {
	*hr = httpReceiver{
		w:         w,
		rc:        *http.NewResponseController(w),
		enc:       enc,
		streaming: streaming,
		limit:     h.opts.ResponseLimit,
		timeout:   h.opts.WriteTimeout,
		gone:      r.Context().Done(),
		t:         t,
		obs:       h.obs,
	}
}

// newPollReceiver: a polling request's receiver (xhr, jsonp).
func (h *Handler) newPollReceiver(w http.ResponseWriter, r *http.Request, t session.Transport, enc encoder) *pollReceiver {
	pr := &pollReceiver{ctx: r.Context()} // one allocation for the whole receiver: one per poll
	h.initHTTPReceiver(&pr.httpReceiver, w, r, t, enc, false)
	return pr
}

func (hr *httpReceiver) Gone() <-chan struct{} { return hr.gone }

// pollReceiver answers one polling request with one frame. WriteFrame only
// buffers it; the session calls Finish once it has detached the receiver.
type pollReceiver struct {
	httpReceiver
	ctx context.Context
}

// Finish sends the buffered answer. A client that is known to be gone
// cannot have it, whatever a write into its socket would report, so that
// is an error too: the session then closes with 1002 rather than going on
// without the messages it had taken for this answer. (A client whose abort
// is still on its way cannot be told apart from one that got the answer:
// TCP gives no receipt.)
func (pr *pollReceiver) Finish() error {
	if err := pr.ctx.Err(); err != nil {
		return fmt.Errorf("client went away before its answer was sent: %w", err)
	}
	_ = pr.rc.SetWriteDeadline(time.Now().Add(pr.timeout))
	if err := pr.rc.Flush(); err != nil {
		return fmt.Errorf("sending the answer: %w", err)
	}
	return nil
}

func (hr *httpReceiver) WriteFrame(f *engine.Frame) (bool, error) {
	bp := bufPool.Get().(*[]byte)
	b := hr.enc((*bp)[:0], f)
	var err error
	if hr.streaming {
		err = hr.writeRaw(b)
	} else {
		// A polling response is not flushed here: pollReceiver.Finish
		// sends it after the session has detached the receiver, so a
		// client that polls again at once never finds it still
		// attached. It carries one frame, whose length is known.
		if hr.written == 0 {
			hr.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		_, err = hr.w.Write(b)
	}
	n := len(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	if err != nil {
		return true, err
	}
	hr.obs.FrameWritten(hr.t, f.Kind, len(f.Messages), n)
	hr.written += n
	if !hr.streaming || f.Kind == session.FrameClose || f.Last {
		return true, nil
	}
	return hr.written >= hr.limit, nil
}

// writeRaw writes and flushes b under the write timeout, so a client that
// stops reading is dropped instead of holding its session forever.
func (hr *httpReceiver) writeRaw(b []byte) error {
	_ = hr.rc.SetWriteDeadline(time.Now().Add(hr.timeout))
	if _, err := hr.w.Write(b); err != nil {
		return err
	}
	return hr.rc.Flush()
}
