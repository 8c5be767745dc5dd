package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// xhr-streaming and xhr-polling: one receiving request at a time (a
// streaming response is reopened when the server ends it at its response
// limit), and one xhr_send in flight carrying everything queued.

func dialHTTP(ctx context.Context, base target, t string, opts Options) (*Conn, error) {
	su := sessionURL(base)
	c := newConn(t, opts)
	streaming := t == XHRStreaming || t == EventSource
	endpoint := "/xhr"
	switch t {
	case XHRStreaming:
		endpoint = "/xhr_streaming"
	case EventSource:
		endpoint = "/eventsource"
	}
	// The first receiving request must bring the open frame within the
	// connect timeout (a proxy that buffers the stream will not). A
	// streaming response stays open afterwards, so its context is the
	// connection's, cancelled by a timer or by ctx only while connecting.
	attempt, cancelAttempt := context.WithCancel(c.ctx)
	timer := time.AfterFunc(opts.ConnectTimeout, cancelAttempt)
	stop := context.AfterFunc(ctx, cancelAttempt)
	body, br, err := c.receive(attempt, su.url(endpoint), streaming)
	var frame []byte
	if err == nil {
		frame, err = c.readFrame(br)
	}
	timedOut := !timer.Stop()
	stop()
	if err != nil || string(frame) != "o" {
		if body != nil {
			body.Close()
		}
		c.cancel()
		if timedOut {
			return nil, fmt.Errorf("no open frame within %v", opts.ConnectTimeout)
		}
		return nil, fmt.Errorf("no open frame (got %q): %v", frame, err)
	}
	if !streaming {
		body.Close()
		body, br = nil, nil
	}
	c.start(
		func() { c.receiveLoop(su.url(endpoint), streaming, body, br) },
		func() { c.sendLoop(su.url("/xhr_send")) },
	)
	return c, nil
}

// receive starts one receiving request and, for streaming, skips the
// prelude.
func (c *Conn) receive(ctx context.Context, url string, streaming bool) (io.ReadCloser, *bufio.Reader, error) {
	method := http.MethodPost
	if c.transport == EventSource {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, nil, err
	}
	copyHeader(req.Header, c.opts.Header)
	res, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, nil, fmt.Errorf("status %d", res.StatusCode)
	}
	br := bufio.NewReaderSize(res.Body, 16<<10)
	if streaming {
		if _, err := br.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			res.Body.Close()
			return nil, nil, fmt.Errorf("prelude: %w", err)
		}
	}
	return res.Body, br, nil
}

// readFrame reads the next frame of the connection's receiving response:
// a line, or on eventsource an event's data ("data: <frame>\r\n\r\n").
func (c *Conn) readFrame(br *bufio.Reader) ([]byte, error) {
	if c.transport != EventSource {
		return readFrame(br, c.opts.MaxFrameBytes)
	}
	for {
		line, err := readFrame(br, c.opts.MaxFrameBytes+len("data: \r"))
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			return data, nil
		}
		// The blank line ending an event, or a field this client
		// does not use.
	}
}

// readFrame reads one '\n'-terminated frame of at most max bytes. The
// frame is valid until the next read from br.
func readFrame(br *bufio.Reader, max int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil && len(line) > max+1 {
		return nil, errFrameTooBig
	}
	if err == nil {
		return line[:len(line)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	long := append([]byte(nil), line...)
	for {
		line, err = br.ReadSlice('\n')
		if len(long)+len(line) > max+1 {
			return nil, errFrameTooBig
		}
		long = append(long, line...)
		switch {
		case err == nil:
			return long[:len(long)-1], nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, err
		}
	}
}

// receiveLoop reads frames; body and br, when not nil, are the open
// streaming response to continue with.
func (c *Conn) receiveLoop(url string, streaming bool, body io.ReadCloser, br *bufio.Reader) {
	busy := 0
	for {
		if body == nil {
			var err error
			body, br, err = c.receive(c.ctx, url, streaming)
			if err != nil {
				c.shutdown(1006, "Connection lost")
				return
			}
		}
		for {
			f, err := c.readFrame(br)
			if errors.Is(err, errFrameTooBig) {
				body.Close()
				c.shutdown(1009, "Frame too big")
				return
			}
			if errors.Is(err, io.EOF) {
				break // response ended: reconnect (rollover or next poll)
			}
			if err != nil {
				// Cut off (a reset, a truncated chunked body): frames the
				// server wrote may be lost, and the protocol has no way to
				// ask again. The session is over for us, as for
				// sockjs-client; carrying on would skip them silently.
				body.Close()
				c.shutdown(1006, "Connection lost")
				return
			}
			if string(f) == anotherConnection && busy < maxBusyRetries {
				// Some servers (igm/sockjs-go) release a receiver only
				// after its answer reached us: our previous request still
				// holds the session. That is not a close; ask again soon.
				busy++
				body.Close()
				body = nil
				select {
				case <-time.After(time.Duration(busy) * 10 * time.Millisecond):
				case <-c.ctx.Done():
					return
				}
				break
			}
			busy = 0
			if !c.handleFrame(f) {
				body.Close()
				return
			}
			if !streaming {
				// A poll answer is complete when its response ends;
				// polling again before that could find the previous
				// poll still attached to the session.
				_, _ = io.CopyN(io.Discard, br, int64(c.opts.MaxFrameBytes))
				break
			}
		}
		if body != nil {
			body.Close()
			body = nil
		}
		if c.ctx.Err() != nil {
			return
		}
	}
}

const (
	anotherConnection = `c[2010,"Another connection still open"]`
	maxBusyRetries    = 10
)

func (c *Conn) sendLoop(sendURL string) {
	var buf []string
	for {
		var b []byte
		var ok bool
		buf, b, ok = c.nextBatch(buf)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sendURL, bytes.NewReader(b))
		req.Header.Set("Content-Type", "text/plain")
		copyHeader(req.Header, c.opts.Header)
		res, err := c.opts.HTTPClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		cancel()
		if err != nil {
			// As sockjs-client's "Sending error: …", the reason says why,
			// so that a failed send can be told from the log; without the
			// request's URL, which holds the session's path.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			c.shutdown(1006, "Send failed: "+err.Error())
			return
		}
		if res.StatusCode != http.StatusNoContent {
			c.shutdown(1006, "Send failed: HTTP "+res.Status)
			return
		}
	}
}
