package adversarial

import (
	binenc "encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/transport"
)

// TestWebSocketHalfFrames: websockets each send the first half of a frame
// that declares 1,000,000 bytes (within -max-message-bytes) and go silent
// (issue 20, item 1). A build without the message gates held every half
// for as long as the sockets stayed open: 500 sockets grew the server by
// 328-343 MB. Now the halves count against -message-budget-bytes and the
// payload deadline (-message-read-timeout) closes each socket: 1008 for a
// message that stopped arriving, 1013 for one that waited for the budget
// until its deadline. Every socket must be closed with one of the two
// within the deadline plus slack, each counted; the peak RSS growth stays
// under the budget plus a per-socket part; a probe still echoes.
//
// SOCKJSD_ADVERSARIAL_WS_HALF sets the number of sockets (default 500;
// the target is 5,000 under 100 MB, measured by hand, see
// docs/limits.md).
func TestWebSocketHalfFrames(t *testing.T) {
	t.Parallel()
	n := 500
	if v := os.Getenv("SOCKJSD_ADVERSARIAL_WS_HALF"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("SOCKJSD_ADVERSARIAL_WS_HALF=%q: want a positive count", v)
		}
	}
	const (
		timeout  = 4 * time.Second
		slack    = 15 * time.Second // a loaded 2-core machine, the close handshake
		declared = 1_000_000
		sent     = declared / 2
		budget   = transport.DefaultMessageBudgetBytes
	)
	srv := Start(t, Config{Env: map[string]string{
		"SOCKJSD_MESSAGE_READ_TIMEOUT":        timeout.String(),
		"SOCKJSD_MAX_CONNECTIONS_PER_ADDRESS": "0",
		"SOCKJSD_MAX_CONNECTIONS":             "0",
	}})
	p := srv.Probe(t)
	base := srv.RSS(t)

	// Open every socket first: the attack is many sockets at once.
	conns := make([]*websocket.Conn, n)
	var openErrs atomic.Int32
	parallel(n, 50, func(i int) {
		ws, _, err := srv.WS(t, "/echo/000/"+sid()+"/websocket", nil)
		if err != nil {
			openErrs.Add(1)
			return
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "o" {
			openErrs.Add(1)
			return
		}
		conns[i] = ws
	})
	if e := openErrs.Load(); e > 0 {
		t.Fatalf("%d of %d websockets did not open", e, n)
	}
	t.Logf("%d websockets open: RSS +%d MiB (peak +%d MiB)", n, (srv.RSS(t)-base)>>20, (srv.PeakRSS(t)-base)>>20)

	half := halfFrame(declared, sent)
	var (
		wg      sync.WaitGroup
		codes   sync.Map // close code -> *atomic.Int32
		late    atomic.Int32
		slowest atomic.Int64
	)
	for _, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			nc := ws.NetConn()
			// The write blocks while the server does not read (the budget
			// is in use): the server's drain after its close frame, or the
			// close, ends it.
			go func() {
				_ = nc.SetWriteDeadline(time.Now().Add(timeout + slack))
				_, _ = nc.Write(half)
			}()
			code := closeCodeWithin(ws, timeout+slack)
			took := time.Since(start)
			for {
				s := slowest.Load()
				if int64(took) <= s || slowest.CompareAndSwap(s, int64(took)) {
					break
				}
			}
			if took > timeout+slack {
				late.Add(1)
			}
			c, _ := codes.LoadOrStore(code, new(atomic.Int32))
			c.(*atomic.Int32).Add(1)
			ws.Close()
		}()
	}
	midway := time.AfterFunc(timeout-time.Second, func() {
		t.Logf("before the deadline: RSS +%d MiB (peak +%d MiB)", (srv.RSS(t)-base)>>20, (srv.PeakRSS(t)-base)>>20)
	})
	defer midway.Stop()
	wg.Wait()
	got := map[int]int32{}
	codes.Range(func(k, v any) bool { got[k.(int)] = v.(*atomic.Int32).Load(); return true })
	t.Logf("close codes %v; slowest close %v after its half frame (deadline %v)", got, time.Duration(slowest.Load()), timeout)
	if got[1008]+got[1013] != int32(n) {
		t.Errorf("close codes %v: want 1008 or 1013 for all %d sockets", got, n)
	}
	if l := late.Load(); l > 0 {
		t.Errorf("%d sockets closed later than the deadline (%v) + %v", l, timeout, slack)
	}
	hits := srv.Metric(t, "sockjs_limit_hits_total", "limit", "message-read-timeout") +
		srv.Metric(t, "sockjs_limit_hits_total", "limit", "message-budget")
	if hits != float64(n) {
		t.Errorf("message-read-timeout + message-budget limit hits: %v, want %d", hits, n)
	}
	// The budget with GC headroom over it, and the sockets themselves:
	// an open websocket session costs 12-14 KiB here, its 1 KiB message
	// allowance included. 5,000 sockets: 118 MiB.
	srv.AssertGrowth(t, base, budget+budget/2+int64(n)*16<<10+16<<20)
	p.Check(t)
}

// halfFrame is the start of a masked text frame declaring size bytes:
// its header and sent bytes of payload (the zero mask leaves it as is).
func halfFrame(size, sent int) []byte {
	out := []byte{0x81, 0x80 | 127}
	out = binenc.BigEndian.AppendUint64(out, uint64(size))
	out = append(out, 0, 0, 0, 0)
	return append(out, strings.Repeat("x", sent)...)
}

// closeCodeWithin reads until the websocket's close frame, for at most d,
// and returns its code (-1 if the connection ended without one, 0 if d
// passed).
func closeCodeWithin(c *websocket.Conn, d time.Duration) int {
	_ = c.SetReadDeadline(time.Now().Add(d))
	for i := 0; i < 100; i++ {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0
		}
		if err != nil {
			return -1
		}
	}
	return -1
}
