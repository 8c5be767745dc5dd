package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"
)

// closeOnUnreadBody closes the connection after an answer given without
// reading the request's whole body (issue 20, item 2): a POST to /info, a
// send to an unknown session, a 405. net/http would otherwise read up to
// 256 KB of the rest of the body with no deadline, twice over: before
// writing the answer's header, and again when it closes the body after
// the handler. A client trickling its body at 1 byte/s held its
// connection for ever, without even getting the answer.
//
// Two steps stop both reads. "Connection: close" on the answer makes
// net/http write it without reading the body first, and a read deadline
// in the past, set when the handler returns, ends the read at the body's
// close at once; net/http then closes the connection. Requests without a
// body (websocket upgrades, polls, streams) and those whose body the
// handler read to its end (xhr_send) pass through untouched and keep
// their connection.
//
// HTTP/2 needs neither step, and must not get the first: its server
// answers without waiting for the body, ends an unread body with a
// RST_STREAM of that stream alone once the handler returns, and turns a
// "Connection: close" answer into a GOAWAY that would end every other
// session multiplexed on the connection.
func closeOnUnreadBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 || r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		// One allocation for both: this runs for every request with a
		// body (every xhr_send).
		uw := &unreadBodyWriter{ResponseWriter: w, body: bodyReader{ReadCloser: r.Body, left: r.ContentLength}}
		b := &uw.body
		r.Body = b
		next.ServeHTTP(uw, r)
		if uw.hijacked {
			return // the connection is the handler's
		}
		uw.closeIfUnread() // if the handler wrote nothing: net/http answers 200 now
		if !b.read {
			_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
		}
	})
}

// bodyReader notes when the body has been read to its end.
type bodyReader struct {
	io.ReadCloser
	left int64 // bytes of the declared Content-Length not read yet (-1: chunked)
	read bool  // read to EOF, or every declared byte
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if err == io.EOF || b.left == 0 {
		b.read = true
	}
	return n, err
}

// unreadBodyWriter sets "Connection: close" before the answer's header is
// written, if the body is not read by then.
type unreadBodyWriter struct {
	http.ResponseWriter
	body     bodyReader // the request's body, as the handler reads it (a field: its Read and Close are not the writer's)
	wrote    bool
	hijacked bool
}

func (w *unreadBodyWriter) closeIfUnread() {
	if w.wrote {
		return
	}
	w.wrote = true
	if !w.body.read {
		w.ResponseWriter.Header().Set("Connection", "close")
	}
}

func (w *unreadBodyWriter) WriteHeader(code int) {
	if code >= 200 { // not for 1xx: 100 Continue comes before the body
		w.closeIfUnread()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *unreadBodyWriter) Write(p []byte) (int, error) {
	w.closeIfUnread()
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps net/http's sendfile path for files answered to a request
// with a body.
func (w *unreadBodyWriter) ReadFrom(r io.Reader) (int64, error) {
	w.closeIfUnread()
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap gives http.ResponseController (flush, deadlines, hijack) the
// connection's own writer.
func (w *unreadBodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush is for handlers that assert http.Flusher rather than use a
// ResponseController.
func (w *unreadBodyWriter) Flush() {
	w.closeIfUnread()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (through http.ResponseController
// too): closeOnUnreadBody then leaves it alone.
func (w *unreadBodyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.hijacked = err == nil
	return c, rw, err
}
