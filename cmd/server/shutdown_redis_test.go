package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestHubCloseRedisFrozen: what the shutdown calls last, the hub's Close
// (the Redis broker's Close, then its client's), returns within 3 s with
// hub subscribers and Redis stopped by SIGSTOP (connections accepted,
// commands taken, nothing answered), with go-redis's default timeouts
// and with no read deadline at all (read_timeout=-1 in the -redis URL).
// The bound is the broker's 2 s (docs/hub.md, "Shutdown") and slack for
// a loaded machine; rdb.Close does not wait for Redis. A broker Close that waits for its loops until they
// return took 10 to 30 s with the defaults, and never returned with
// read_timeout=-1.
func TestHubCloseRedisFrozen(t *testing.T) {
	const bound = 3 * time.Second
	for _, q := range []struct{ name, query string }{
		{"default timeouts", ""},
		{"read_timeout=-1", "?read_timeout=-1"},
	} {
		t.Run(q.name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			var log testenv.Buffer
			srv, addr := startServerLog(t, &log, "-redis", rs.URL+q.query, "-cluster-secret", "test-secret", "-hub-presence-ttl", "300ms")
			waitReady(t, addr)
			for i := range 3 {
				hubSubscriber(t, addr, fmt.Sprint("chat.room", i))
			}
			rs.FreezeQueued() // the broker's heartbeat writes every 5s/3
			start := time.Now()
			done := make(chan struct{})
			go func() {
				_ = srv.hub.Close()
				close(done)
			}()
			select {
			case <-done:
				t.Logf("the hub's Close took %v", time.Since(start).Round(time.Millisecond))
				// Heartbeats every 100ms (-hub-presence-ttl 300ms): one
				// of them is, as a rule, waiting for Redis at Close.
				t.Logf("Close stopped waiting for a loop in a Redis call: %v",
					strings.Contains(log.String(), "closed before its loops returned"))
			case <-time.After(bound):
				t.Errorf("the hub's Close did not return within %v", bound)
				rs.Stop() // Redis's connections reset: what Close waits for ends
				<-done
			}
		})
	}
}

// TestBinaryShutdownRedisDown runs the real binary in cluster mode with
// hub subscribers, stops its Redis and sends SIGTERM once /readyz says
// Redis is down: the process exits within exitBound.
func TestBinaryShutdownRedisDown(t *testing.T) {
	bin := buildBinary(t, nil)
	// exitBound: leaving the cluster (its keep loop's store call and the
	// release of the session records, 2 s each at most when Redis
	// refuses connections), the broker's Close (2 s at most), and slack
	// for a process on a loaded machine. Measured: 1.0 s with the client's
	// ContextTimeoutEnabled, 2.0 to 3.6 s without it; with a broker Close
	// that waits for its loops until they return, 3.3 to 12.8 s.
	const exitBound = 10 * time.Second
	rs := testenv.StartRedis(t)
	p := startBinary(t, bin, "-redis", rs.URL, "-cluster-secret", "test-secret", "-drain-delay=0", "-shutdown-timeout", "10s")
	p.waitReadyz(t, http.StatusOK)
	for i := range 3 {
		hubSubscriber(t, p.addr, fmt.Sprint("chat.room", i))
	}
	rs.Stop()
	p.waitReadyz(t, http.StatusServiceUnavailable)
	sigAt := p.signal(t, syscall.SIGTERM)
	exitAt := p.waitExit(t, exitBound)
	logExit(t, p, exitAt.Sub(sigAt))
}

// TestBinaryShutdownRedisFrozen runs the real binary in cluster mode
// with hub subscribers and an HTTP hub session (a session record this
// node owns, and a session to hand off), stops its Redis with SIGSTOP
// (connections accepted, commands taken, nothing answered) once a
// command waits for it, and sends SIGTERM: the process exits within
// exitBound, with go-redis's default timeouts and with no read deadline
// at all (read_timeout=-1 in the -redis URL).
func TestBinaryShutdownRedisFrozen(t *testing.T) {
	bin := buildBinary(t, nil)
	// exitBound: -shutdown-timeout (the hand-off, 1 s at most here, and
	// the sessions' close frames), leaving the cluster (at most
	// StoreTimeout, 2 s, for the keep loop, then 2 s for the release of
	// the session records), the broker's Close (2 s at most), and slack
	// for a process on a loaded machine.
	const shutdownTimeout = 4 * time.Second
	const exitBound = shutdownTimeout + 6*time.Second
	for _, q := range []struct{ name, query string }{
		{"default timeouts", ""},
		{"read_timeout=-1", "?read_timeout=-1"},
	} {
		t.Run(q.name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			p := startBinary(t, bin, "-redis", rs.URL+q.query, "-cluster-secret", "test-secret",
				"-drain-delay=0", "-shutdown-timeout", shutdownTimeout.String(), "-handoff-timeout", "1s")
			p.waitReadyz(t, http.StatusOK)
			for i := range 3 {
				hubSubscriber(t, p.addr, fmt.Sprint("chat.room", i))
			}
			if code, body, err := post("http://"+p.addr+"/hub/000/frozen1/xhr", ""); err != nil || code != http.StatusOK || body != "o\n" {
				t.Fatalf("open an xhr hub session: %d %q, %v", code, body, err)
			}
			// The cluster's keep loop reads Redis every 500 ms, the
			// broker's heartbeat writes every 5s/3: one of them soon
			// sends a command Redis will not read.
			rs.FreezeQueued()
			sigAt := p.signal(t, syscall.SIGTERM)
			exitAt := p.waitExit(t, exitBound)
			logExit(t, p, exitAt.Sub(sigAt))
		})
	}
}

// waitReady polls the in-process server's /readyz (every 20ms, 15s at
// most) until it answers 200.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := httpGet("http://" + addr + "/readyz")
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answers %d %q after 15s", code, body)
		}
		time.Sleep(20 * time.Millisecond) // polling the server, bounded by the deadline
	}
}

// logExit logs how long after SIGTERM p exited, and the shutdown time
// its log gave.
func logExit(t *testing.T, p *binaryProc, after time.Duration) {
	t.Helper()
	shut := "?"
	if m := tookRe.FindStringSubmatch(p.log.String()); m != nil {
		shut = m[1]
	}
	t.Logf("exited %v after SIGTERM (shutdown %s)", after.Round(time.Millisecond), shut)
}

// hubSubscriber opens a websocket hub session subscribed to channel; it
// is closed when the test ends.
func hubSubscriber(t *testing.T, addr, channel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := sockjs.Dial(ctx, "http://"+addr+"/hub", sockjs.Options{Transports: []string{sockjs.WebSocket}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Send(`{"op":"subscribe","channel":"` + channel + `"}`); err != nil {
		t.Fatal(err)
	}
	for {
		raw, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ Op string }
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("not JSON: %q", raw)
		}
		switch m.Op {
		case "subscribed":
			return
		case "error":
			t.Fatalf("subscribe to %s: %s", channel, strings.TrimSpace(raw))
		}
	}
}
