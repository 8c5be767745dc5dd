package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// busyFrame is the answer a server gives a receiving request while it
// still counts an earlier one as attached to the session. The Go client
// retries it (igm/sockjs-go answers it under load); a browser's
// sockjs-client closes the session. The load generator counts them.
var busyFrame = []byte(`c[2010,`)

// busyCounter wraps a RoundTripper and counts 2010 frames in the bodies
// of xhr and xhr_streaming responses.
type busyCounter struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (b busyCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := b.next.RoundTrip(req)
	if err == nil && (strings.HasSuffix(req.URL.Path, "/xhr") || strings.HasSuffix(req.URL.Path, "/xhr_streaming")) {
		res.Body = &busyScanner{ReadCloser: res.Body, n: b.n}
	}
	return res, err
}

// busyScanner counts busyFrame in what is read through it, including
// occurrences split between two reads.
type busyScanner struct {
	io.ReadCloser
	n    *atomic.Int64
	tail []byte // the last len(busyFrame)-1 bytes read
}

func (s *busyScanner) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if n > 0 {
		buf := append(s.tail, p[:n]...)
		s.n.Add(int64(bytes.Count(buf, busyFrame)))
		keep := min(len(buf), len(busyFrame)-1)
		s.tail = append(s.tail[:0], buf[len(buf)-keep:]...)
	}
	return n, err
}
