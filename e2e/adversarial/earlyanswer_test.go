package adversarial

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowBodyAfterEarlyAnswer: 200 connections send requests the server
// answers without reading their body (a POST to /info: 405, a send to an
// unknown session: 404, a PUT to xhr_send: 405), each declaring a 200 KB
// body and trickling it at 1 byte/s. Each gets its answer with
// "Connection: close" and is closed at once, well within 10 s; a probe
// from the same address still echoes. Before the fix net/http drained up
// to 256 KB of each body before writing the answer, with no deadline: no
// answer came, and each connection (a descriptor, a goroutine, buffers)
// was held for the 200,000 s the body takes.
func TestSlowBodyAfterEarlyAnswer(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{})
	p := srv.Probe(t)
	base := srv.RSS(t)
	reqs := []string{"POST /echo/info", "POST /echo/000/nosuchsession/xhr_send", "PUT /echo/000/abc/xhr_send"}
	const n = 200

	// One ticker trickles a byte a second into every connection still open.
	var mu sync.Mutex
	var open []net.Conn
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			for _, c := range open {
				_, _ = c.Write([]byte("x"))
			}
			mu.Unlock()
		}
	}()

	var closed atomic.Int32
	var slowest atomic.Int64
	errs := make(chan error, n)
	start := time.Now()
	parallel(n, n, func(i int) {
		c := srv.Raw(t)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 200000\r\n\r\nx", reqs[i%len(reqs)])
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			errs <- fmt.Errorf("%s: no answer: %v", reqs[i%len(reqs)], err)
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 404 && res.StatusCode != 405 || !res.Close {
			errs <- fmt.Errorf("%s: %d, Connection: %q", reqs[i%len(reqs)], res.StatusCode, res.Header.Get("Connection"))
			return
		}
		if _, err := br.ReadByte(); err != io.EOF {
			errs <- fmt.Errorf("%s: after the answer: %v, want the connection closed", reqs[i%len(reqs)], err)
			return
		}
		closed.Add(1)
		for d := int64(time.Since(t0)); ; {
			if s := slowest.Load(); d <= s || slowest.CompareAndSwap(s, d) {
				break
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
		break
	}
	t.Logf("%d of %d early-answered connections closed in %v (slowest %v)", closed.Load(), n,
		time.Since(start).Round(time.Millisecond), time.Duration(slowest.Load()).Round(time.Millisecond))
	if closed.Load() != n {
		t.Errorf("connections answered and closed: %d of %d", closed.Load(), n)
	}
	srv.AssertGrowth(t, base, 32<<20)
	p.Check(t)
}
