package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// TestSlowSubscriberDoesNotStallFanOut: among websocket subscribers that
// read, one never reads. Publishes write to idle connections on the
// publisher's goroutine; the silent one's socket fills, what it did not
// take is held and left to a pump, and its queue (64 KiB) overflows into
// 3009. No publish waits for it (the write timeout is a minute; each
// publish must return within 5 s), the readers get every message in
// order, and the silent one finds the close frame after what it had.
func TestSlowSubscriberDoesNotStallFanOut(t *testing.T) {
	obs := &rttObserver{rtts: map[session.Transport]int{}}
	h := hub.New(hub.Options{Rules: defaultRules, PingInterval: time.Hour, Observer: obs})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{
		WriteTimeout: time.Minute,
		Session:      session.Options{SendQueueBytes: 64 << 10},
	}, h.Serve))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	// The silent subscriber: a small receive buffer, so that its
	// socket fills after a few hundred kilobytes rather than megabytes.
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}).DialContext}
	slow, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/hub/000/slow/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	subscribeWS(t, slow, "news")

	const readers = 3
	conns := make([]*hubConn, readers)
	for i := range conns {
		conns[i] = dialHub(t, srv.URL+"/hub", client.WebSocket)
		conns[i].send(`{"op":"subscribe","channel":"news"}`)
		conns[i].expect("subscribed")
	}
	results := make(chan error, readers)
	lastSeq := make(chan uint64, 1)
	// Each reader's progress: the publisher stays at most a window ahead
	// of the slowest, so that readers never fall behind by their queue.
	progress := make([]atomic.Uint64, readers)
	for r, c := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// last is the final seq, known once the publisher sent it
			// (before publishing it, so that no reader waits for it
			// without a message to come).
			want, last := uint64(1), uint64(0)
			for last == 0 || want <= last {
				m, err := c.c.Recv(ctx)
				if err != nil {
					results <- fmt.Errorf("after seq %d: %w", want-1, err)
					return
				}
				op, seq := seqOf(m)
				if op != "message" {
					continue
				}
				if seq != want {
					results <- fmt.Errorf("seq %d, want %d", seq, want)
					return
				}
				want++
				progress[r].Store(seq)
				if last == 0 {
					select {
					case last = <-lastSeq:
						lastSeq <- last // for the other readers
					default:
					}
				}
			}
			results <- nil
		}()
	}

	// Publish until the silent subscriber is dropped (the fan-out, on
	// its own goroutine, may reach it after the publishes returned),
	// then 10 more.
	data := json.RawMessage(`{"text":"` + strings.Repeat("x", 1000) + `"}`)
	dropped := func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.dropped > 0 }
	var seq uint64
	publish := func() {
		t.Helper()
		// At most 32 messages (32 KB, half a queue) ahead of the
		// slowest reader, whose progress is waited for, bounded.
		wait := time.Now().Add(time.Minute)
		for r := range progress {
			for progress[r].Load()+32 < seq {
				if time.Now().After(wait) {
					t.Fatalf("reader %d stuck at seq %d of %d", r, progress[r].Load(), seq)
				}
				time.Sleep(200 * time.Microsecond) // polling the readers' progress, bounded by wait
			}
		}
		start := time.Now()
		if seq, err = h.Publish(context.Background(), "news", data); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("publish %d took %v: the fan-out waited for the silent subscriber", seq, d)
		}
	}
	for seq < 20_000 && !dropped() {
		publish()
	}
	deadline := time.Now().Add(time.Minute)
	for !dropped() {
		if time.Now().After(deadline) {
			t.Fatalf("the silent subscriber was not dropped after %d publishes (%d MB)", seq, seq*uint64(len(data))>>20)
		}
		time.Sleep(10 * time.Millisecond) // the fan-out catching up, bounded
	}
	t.Logf("the silent subscriber was dropped; %d publishes of %d bytes made", seq, len(data))
	for range 10 {
		publish()
	}
	lastSeq <- seq + 1
	if _, err := h.Publish(context.Background(), "news", data); err != nil {
		t.Fatal(err)
	}
	for range readers {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}

	// The silent subscriber finds its close frame after what it had.
	_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, m, err := slow.ReadMessage()
		if err != nil {
			t.Fatalf("the silent subscriber's connection ended without the close frame: %v", err)
		}
		if strings.HasPrefix(string(m), "c[") {
			if want := `c[3009,"Send queue overflow"]`; string(m) != want {
				t.Fatalf("close frame %s, want %s", m, want)
			}
			break
		}
	}
}
