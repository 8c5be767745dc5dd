package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

func dialWebSocket(ctx context.Context, base target, opts Options) (*Conn, error) {
	u := "ws" + strings.TrimPrefix(sessionURL(base).url("/websocket"), "http")
	dctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: opts.ConnectTimeout, ReadBufferSize: 4096, WriteBufferSize: 4096,
		NetDialContext: opts.NetDialContext}
	ws, res, err := d.DialContext(dctx, u, opts.Header)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("upgrade refused: status %d", res.StatusCode)
		}
		return nil, err
	}
	ws.SetReadLimit(int64(opts.MaxFrameBytes))
	_ = ws.SetReadDeadline(time.Now().Add(opts.ConnectTimeout))
	_, m, err := ws.ReadMessage()
	if err != nil || string(m) != "o" {
		ws.Close()
		return nil, fmt.Errorf("no open frame (got %q): %v", m, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	c := newConn(WebSocket, opts)
	c.closer = func() {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
		_ = ws.Close()
	}
	c.start(
		func() { // reader
			for {
				_, m, err := ws.ReadMessage()
				if errors.Is(err, websocket.ErrReadLimit) {
					c.shutdown(1009, "Frame too big")
					return
				}
				if err != nil {
					c.shutdown(1006, "Connection lost")
					return
				}
				if !c.handleFrame(m) {
					return
				}
			}
		},
		func() { // writer: batches what was queued meanwhile into one frame
			var buf []string
			for {
				var b []byte
				var ok bool
				buf, b, ok = c.nextBatch(buf)
				if !ok {
					return
				}
				_ = ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
					c.shutdown(1006, "Connection lost")
					return
				}
			}
		},
		func() { // closes the socket when the connection ends, unblocking the reader
			<-c.ctx.Done()
			_ = ws.Close()
		},
	)
	return c, nil
}
