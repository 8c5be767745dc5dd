package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The hub mode's websocket subscribers are read raw by default (-hub-raw):
// a gorilla connection to the SockJS websocket endpoint and one goroutine
// per subscriber that scans each frame for the hub's messages, with no
// JSON decoding and no SockJS client (its queues and goroutines). Read
// through the client, 10,000 subscribers took more of the load
// generator's core than the server's fan-out took of its own, and the
// delays measured were the client's.

// rawConn is one raw websocket subscriber.
type rawConn struct {
	c *websocket.Conn
}

// dialRaw opens c.n SockJS websocket sessions at url without the client.
func dialRaw(c config, url string, st *stats) []*rawConn {
	ws := "ws" + strings.TrimPrefix(url, "http")
	dialers := make([]*websocket.Dialer, c.localAddrs)
	for i := range dialers {
		d := &net.Dialer{Timeout: 30 * time.Second}
		if c.localAddrs > 1 {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))}
		}
		dialers[i] = &websocket.Dialer{NetDialContext: d.DialContext, HandshakeTimeout: 30 * time.Second}
	}
	return dialEach(c, st, func(ctx context.Context, i int) (*rawConn, error) {
		var id [8]byte
		_, _ = rand.Read(id[:])
		conn, _, err := dialers[i%len(dialers)].DialContext(ctx, ws+"/000/"+hex.EncodeToString(id[:])+"/websocket", nil)
		if err != nil {
			return nil, err
		}
		return &rawConn{c: conn}, nil
	})
}

// rawSubscriber is subscriber for a raw connection: it subscribes and
// records every delivery in its step.
func rawSubscriber(ctx context.Context, conn *rawConn, sub string, steps []*stepStats, subscribed *sync.WaitGroup, n *atomic.Int64, st *stats) {
	acked := false
	defer func() {
		if !acked {
			subscribed.Done()
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = conn.c.Close() })
	defer stop()
	frame, _ := json.Marshal([]string{sub})
	if err := conn.c.WriteMessage(websocket.TextMessage, frame); err != nil {
		st.fail(err)
		return
	}
	var buf bytes.Buffer
	var last uint64
	for {
		_, r, err := conn.c.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			if ctx.Err() == nil {
				st.fail(fmt.Errorf("subscriber: %w", err))
			}
			return
		}
		now := time.Now()
		b := buf.Bytes()
		switch {
		case len(b) == 0 || b[0] == 'o' || b[0] == 'h':
			continue
		case b[0] == 'c':
			st.fail(fmt.Errorf("subscriber closed by the server: %.80s", b))
			return
		}
		// a["…","…"]: the hub's JSON objects, escaped inside SockJS's
		// strings; each begins with its op.
		for {
			i := bytes.Index(b, []byte(`{\"op\":\"`))
			if i < 0 {
				break
			}
			b = b[i+len(`{\"op\":\"`):]
			switch {
			case bytes.HasPrefix(b, []byte(`message\"`)):
				record(b, rawKeys, &last, steps, now, st)
			case bytes.HasPrefix(b, []byte(`subscribed\"`)):
				seq, _ := fieldUint(b, `\"seq\":`)
				last = max(last, seq)
				if !acked {
					acked = true
					n.Add(1)
					subscribed.Done()
				}
			case bytes.HasPrefix(b, []byte(`error\"`)):
				st.fail(fmt.Errorf("hub error: %.120s", b))
			}
		}
	}
}
