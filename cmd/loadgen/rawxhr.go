package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The xhr transports spoken in raw HTTP/1.1 (-http raw, echo mode): one
// keep-alive connection for the sends and one for the receiving requests
// of each session, requests prebuilt, answers read with http.ReadResponse
// on the caller's goroutine. Through net/http's client every request
// crosses three goroutines (the caller, the connection's writer and its
// reader) and allocates a context and a timer: at 100 sessions on one
// CPU the load generator then used more CPU per echo than the servers it
// measured (about 1.3x sockjsd's), so it, not the server, set the msgs/s
// of the xhr rows. The protocol is the same: a receiving request always
// outstanding (a long poll, or a stream reopened when the server ends it),
// one xhr_send per message, 2010 answers counted and polled again as the
// Go client does.

// rawXHR is one session. Send is called from one goroutine (echo's);
// the receiving side runs on its own and hands messages to Recv.
type rawXHR struct {
	dial      func(ctx context.Context) (net.Conn, error)
	streaming bool
	busy      *atomic.Int64
	sendReq   []byte // the request line and headers, without Content-Length
	recvReq   []byte
	send      *rawHTTPConn
	msgs      chan string
	errc      chan error // the receiving side's end, once
	opened    chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex
	recv      net.Conn // the receiving side's connection now, for Close
	sendBody  []byte
}

type rawHTTPConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialRawXHR opens a session at service URL u over xhr-polling, or
// xhr-streaming when streaming, and returns once its open frame came.
func dialRawXHR(ctx context.Context, u *url.URL, streaming bool, dial func(context.Context) (net.Conn, error), busy *atomic.Int64) (*rawXHR, error) {
	path := fmt.Sprintf("%s/%03d/%016x", u.EscapedPath(), rand.IntN(1000), rand.Uint64())
	recv := "/xhr"
	if streaming {
		recv = "/xhr_streaming"
	}
	head := func(p string) []byte {
		// The headers net/http's client sends, so that the server parses
		// as much as it did for the Go client.
		return []byte("POST " + path + p + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: Go-http-client/1.1\r\n" +
			"Content-Type: text/plain\r\nAccept-Encoding: gzip\r\n")
	}
	x := &rawXHR{dial: dial, streaming: streaming, busy: busy, sendReq: head("/xhr_send"),
		recvReq: append(head(recv), "Content-Length: 0\r\n\r\n"...),
		msgs:    make(chan string, 64), errc: make(chan error, 1), opened: make(chan struct{})}
	x.ctx, x.cancel = context.WithCancel(context.Background())
	go x.receiveLoop()
	select {
	case <-x.opened:
		return x, nil
	case err := <-x.errc:
		x.cancel()
		return nil, err
	case <-ctx.Done():
		_ = x.Close()
		return nil, ctx.Err()
	}
}

func (x *rawXHR) connect() (*rawHTTPConn, error) {
	c, err := x.dial(x.ctx)
	if err != nil {
		return nil, err
	}
	return &rawHTTPConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

// Send sends one message with an xhr_send request and waits for its 204.
func (x *rawXHR) Send(m string) error {
	if x.send == nil {
		c, err := x.connect()
		if err != nil {
			return err
		}
		x.send = c
	}
	q, _ := json.Marshal([]string{m})
	b := append(x.sendBody[:0], x.sendReq...)
	b = append(append(append(b, "Content-Length: "...), strconv.Itoa(len(q))...), "\r\n\r\n"...)
	b = append(b, q...)
	x.sendBody = b
	_ = x.send.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := x.send.c.Write(b); err != nil {
		return fmt.Errorf("xhr_send: %w", err)
	}
	res, err := http.ReadResponse(x.send.br, nil)
	if err != nil {
		return fmt.Errorf("xhr_send: %w", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		return fmt.Errorf("xhr_send: status %d", res.StatusCode)
	}
	if res.Close {
		_ = x.send.c.Close()
		x.send = nil
	}
	return nil
}

// Recv returns the next message.
func (x *rawXHR) Recv(ctx context.Context) (string, error) {
	select {
	case m := <-x.msgs:
		return m, nil
	case err := <-x.errc:
		x.errc <- err // for the next call
		return "", err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Close ends the session's connections (the server closes the session
// after its disconnect delay).
func (x *rawXHR) Close() error {
	x.cancel()
	x.mu.Lock()
	if x.recv != nil {
		_ = x.recv.Close()
	}
	x.mu.Unlock()
	if x.send != nil {
		_ = x.send.c.Close()
	}
	return nil
}

// receiveLoop keeps one receiving request outstanding until the session
// ends, reconnecting when the server closes the connection.
func (x *rawXHR) receiveLoop() {
	var c *rawHTTPConn
	var body bytes.Buffer
	for x.ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = x.connect(); err != nil {
				x.fail(err)
				return
			}
			x.mu.Lock()
			x.recv = c.c
			x.mu.Unlock()
			if x.ctx.Err() != nil { // Close came before x.recv was set
				_ = c.c.Close()
				return
			}
		}
		if _, err := c.c.Write(x.recvReq); err != nil {
			x.fail(err)
			return
		}
		res, err := http.ReadResponse(c.br, nil)
		if err != nil {
			x.fail(err)
			return
		}
		if res.StatusCode != http.StatusOK {
			x.fail(fmt.Errorf("receiving request: status %d", res.StatusCode))
			return
		}
		if x.streaming {
			err = x.frames(bufio.NewReaderSize(res.Body, 4096))
		} else {
			body.Reset()
			if _, err = body.ReadFrom(res.Body); err == nil {
				err = x.frames(bufio.NewReader(&body))
			}
		}
		res.Body.Close()
		if err != nil {
			x.fail(err)
			return
		}
		if res.Close {
			_ = c.c.Close()
			c = nil
		}
	}
}

// frames handles the '\n'-terminated frames of one answer.
func (x *rawXHR) frames(br *bufio.Reader) error {
	for {
		f, err := br.ReadBytes('\n')
		if len(f) > 0 && f[len(f)-1] == '\n' {
			if err := x.frame(f[:len(f)-1]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (x *rawXHR) frame(f []byte) error {
	if len(f) == 0 {
		return nil
	}
	switch f[0] {
	case 'o':
		select {
		case <-x.opened: // one open frame per session; a second is ignored
		default:
			close(x.opened)
		}
	case 'h': // a heartbeat, or the streaming prelude
	case 'a':
		var ms []string
		if err := json.Unmarshal(f[1:], &ms); err != nil {
			return fmt.Errorf("bad frame %q: %w", f, err)
		}
		for _, m := range ms {
			select {
			case x.msgs <- m:
			case <-x.ctx.Done():
				return x.ctx.Err()
			}
		}
	case 'c':
		if bytes.HasPrefix(f, busyFrame) {
			x.busy.Add(1) // polled again, as the Go client does
			return nil
		}
		return fmt.Errorf("session closed: %s", f)
	default:
		return fmt.Errorf("unknown frame %q", f)
	}
	return nil
}

func (x *rawXHR) fail(err error) {
	if x.ctx.Err() != nil {
		err = errors.Join(err, x.ctx.Err())
	}
	select {
	case x.errc <- err:
	default:
	}
}
