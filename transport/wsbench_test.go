package transport_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// BenchmarkWebSocketReceive: a client writes b.N messages of one size on
// a websocket (SockJS framing and raw) over loopback and the application
// receives them all: the server's read path, message buffers, the message
// budget and deadline included.
func BenchmarkWebSocketReceive(b *testing.B) {
	for _, size := range []int{64, 1000, 3500, 16 << 10} {
		for _, raw := range []bool{false, true} {
			name := fmt.Sprintf("sockjs/%d", size)
			if raw {
				name = fmt.Sprintf("raw/%d", size)
			}
			b.Run(name, func(b *testing.B) { benchWebSocketReceive(b, size, raw) })
		}
	}
}

func benchWebSocketReceive(b *testing.B, size int, raw bool) {
	var got atomic.Int64
	done := make(chan struct{}, 1)
	var want atomic.Int64
	want.Store(-1)
	base := serveOne(b, transport.Options{}, func(s *session.Session) {
		for {
			if _, err := s.Recv(s.Context()); err != nil {
				return
			}
			if got.Add(1) == want.Load() {
				done <- struct{}{}
			}
		}
	})
	url := wsURL(base) + "/000/" + newSID() + "/websocket"
	msg := `["` + strings.Repeat("x", size-4) + `"]`
	if raw {
		url = wsURL(base) + "/websocket"
		msg = strings.Repeat("x", size)
	}
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if !raw {
		if _, _, err := c.ReadMessage(); err != nil { // the open frame
			b.Fatal(err)
		}
	}
	data := []byte(msg)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	want.Store(int64(b.N))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.WriteMessage(websocket.TextMessage, data); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("the application received %d of %d messages", got.Load(), b.N)
	}
}
