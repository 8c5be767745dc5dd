package transport

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkReadWSMessage: the server's read path for one websocket message
// (buffers, budget, size limit) without the network: frames from memory.
func BenchmarkReadWSMessage(b *testing.B) {
	for _, size := range []int{64, 1000, 3500, 16 << 10, 200 << 10} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			frame := clientFrame(true, websocket.TextMessage, bytes.Repeat([]byte("x"), size))
			stream := bytes.Repeat(frame, max(1, (4<<20)/len(frame)))
			per := len(stream) / len(frame)
			m := msgReader{budget: NewBodyBudget(DefaultMessageBudgetBytes), limit: DefaultMaxMessageBytes}
			m.w = newMsgWatcher(time.Minute).watch(nopDeadline{})
			defer m.close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; {
				b.StopTimer()
				conn := upgradeMem(b, stream)
				b.StartTimer()
				for j := 0; j < per && i < b.N; j, i = j+1, i+1 {
					if _, _, err := readWSMessage(context.Background(), conn, &m); err != nil {
						b.Fatal(err)
					}
					m.done()
				}
			}
		})
	}
}

func upgradeMem(tb testing.TB, frames []byte) *websocket.Conn {
	req := httptest.NewRequest("GET", "/echo/websocket", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	up := websocket.Upgrader{ReadBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(hijacker{httptest.NewRecorder(), memConn{bytes.NewReader(frames)}}, req, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return conn
}

// BenchmarkReadDeadlinePair: what a read deadline per message would add
// on a real TCP connection (the clock, setting the deadline and clearing
// it), which the watcher (msgwatch.go) avoids.
func BenchmarkReadDeadlinePair(b *testing.B) {
	c, _ := loopbackPair(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_ = c.SetReadDeadline(time.Time{})
	}
}

// nopDeadline is a connection whose deadlines never fire.
type nopDeadline struct{}

func (nopDeadline) SetReadDeadline(time.Time) error { return nil }
