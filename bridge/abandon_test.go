//go:build linux

package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/bridge"
	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// TestAbandoned: 200 sessions over websocket, xhr-streaming and
// xhr-polling opened and abandoned at once (the clients' connections just
// drop, no close frame): every process group is gone within the grace
// period, a probe session works throughout, and a second round leaves
// memory and goroutines where the first left them.
func TestAbandoned(t *testing.T) {
	if testing.Short() {
		t.Skip("200 processes: skipped under -short")
	}
	const n = 200
	const grace = time.Second
	// The default disconnect delay: on a loaded machine a polling client
	// may take over a second between polls, and a session that expired
	// meanwhile would be made anew, with a second program, by its next
	// poll (the protocol says so).
	s := startServer(t, bridge.Options{KillGrace: grace, Procs: bridge.NewLimit(n + 50), Argv: probeable("exec cat")},
		transport.Options{Session: session.Options{DisconnectDelay: session.DefaultDisconnectDelay}})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	goroutines := runtime.NumGoroutine()
	var heap [2]uint64
	for round := range 2 {
		took := abandon(t, s, hc, n, grace)
		hc.CloseIdleConnections()
		waitFor(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines+10 })
		// Twice: the first collection moves sync.Pool contents (read
		// and message buffers, up to a few MiB after 200 sessions) to
		// the pools' victim caches, the second frees them; after one,
		// the pooled buffers a round happened to leave counted as live
		// heap (a second round 2.6 MiB over the first once).
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap[round] = ms.HeapAlloc
		t.Logf("round %d: %d sessions abandoned, every process group gone %v later; live heap %d KiB; goroutines %d (before: %d)",
			round+1, n, took.Round(time.Millisecond), ms.HeapAlloc>>10, runtime.NumGoroutine(), goroutines)
	}
	if grew := int64(heap[1]) - int64(heap[0]); grew > 2<<20 {
		t.Errorf("live heap grew by %d KiB from the first round to the second", grew>>10)
	}
	if got := s.obs.exitedTotal(); got != s.obs.started.Load() || got < 2*n+4 {
		t.Errorf("started %d, exited %d, want the same, at least %d (two probes a round)", s.obs.started.Load(), got, 2*n+4)
	}
}

// abandon opens n sessions, reads each program's pid, drops them all at
// once and waits for every process group to be gone; it returns how long
// that took.
func abandon(t *testing.T, s *server, hc *http.Client, n int, grace time.Duration) time.Duration {
	conns := make([]*sockjs.Conn, n)
	pids := make([]int, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tr := transports[i%len(transports)]
			c, err := sockjs.Dial(ctx, s.URL, sockjs.Options{Transports: []string{tr}, HTTPClient: hc, RecvQueue: 16, SendQueue: 16})
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			m, err := c.Recv(ctx)
			if err != nil {
				code, reason, _ := c.CloseInfo()
				errs <- fmt.Errorf("%s: first message: %w (close %d %q)", tr, err, code, reason)
				return
			}
			pids[i], _ = strconv.Atoi(m)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if r := s.b.Running(); r != n {
		t.Fatalf("%d programs running, want %d", r, n)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d sessions with a program each: live heap %d KiB (server and clients in this process), %d goroutines, %s",
		n, ms.HeapAlloc>>10, runtime.NumGoroutine(), threads())
	start := time.Now()
	var cw sync.WaitGroup
	for _, c := range conns {
		cw.Add(1)
		go func() { defer cw.Done(); _ = c.Close() }()
	}
	probe(t, s)
	cw.Wait()
	// A polling session whose poll was cut ends at once; one between
	// polls after the disconnect delay. Then cat gets SIGTERM.
	waitGroupsGone(t, pids, session.DefaultDisconnectDelay+grace+5*time.Second)
	took := time.Since(start)
	probe(t, s)
	waitFor(t, 10*time.Second, "every program to be reaped", func() bool { return s.b.Running() == 0 })
	return took
}

// threads is the Threads line of /proc/self/status.
func threads() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "threads unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Threads:") {
			return strings.ToLower(strings.Join(strings.Fields(l), " "))
		}
	}
	return "threads unknown"
}
