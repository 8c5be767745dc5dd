package hub_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
)

// TestFanOut: 2,000 sessions over websocket, xhr-streaming and xhr-polling
// on one channel; 1,000 publishes through the HTTP API; every session gets
// every message once, in order; one session that never reads is
// disconnected for overflowing its queue without delaying the rest.
func TestFanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: 2,000 sessions take minutes; make test runs it")
	}
	if raceEnabled {
		t.Skip("2,000 sessions exceed the race detector's goroutine limit; make test runs this test without -race")
	}
	const (
		sessions  = 2000
		publishes = 1000
	)
	// A queue of 900 of the 1,000 publishes: the stalled session overflows
	// it, and a polling session on a loaded machine (2 cores running the
	// whole suite) does not fall that far behind, as it did at 600. The
	// stalled session must outlive the publishes (90 s on such a machine)
	// to overflow rather than expire.
	e := newEnv(t, defaultRules, "", session.Options{SendQueueMessages: 900, DisconnectDelay: 10 * time.Minute})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * sessions, IdleConnTimeout: time.Minute}}
	transports := []string{client.WebSocket, client.XHRStreaming, client.XHRPolling}

	// The stalled subscriber: an xhr-polling session that subscribes and
	// never polls again.
	stalled := e.url + "/hub/000/stalled"
	post := func(u, body string) string {
		ct := "text/plain" // a SockJS send
		if strings.Contains(u, "/api/") {
			ct = "application/json"
		}
		res, err := hc.Post(u, ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, res.StatusCode)
		buf := make([]byte, 4096)
		n, _ := res.Body.Read(buf)
		return b.String() + " " + string(buf[:n])
	}
	post(stalled+"/xhr", "")
	post(stalled+"/xhr_send", `["{\"op\":\"subscribe\",\"channel\":\"news\"}"]`)

	conns := make([]*client.Conn, sessions)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, sessions)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := client.Dial(context.Background(), e.url+"/hub", client.Options{Transports: []string{transports[i%3]}, HTTPClient: hc})
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			_ = c.Send(`{"op":"subscribe","channel":"news"}`)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for { // pings may come first
				m, err := c.Recv(ctx)
				if err != nil {
					errs <- fmt.Errorf("subscribe: %v", err)
					return
				}
				if strings.Contains(m, `"subscribed"`) {
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Receivers check every message, in order.
	type result struct {
		transport string
		last      time.Time
		err       error
	}
	results := make(chan result, sessions)
	for _, c := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			next := uint64(1)
			for next <= publishes {
				m, err := c.Recv(ctx)
				if err != nil {
					results <- result{c.Transport(), time.Time{}, fmt.Errorf("after seq %d: %w", next-1, err)}
					return
				}
				op, seq := seqOf(m)
				if op != "message" {
					continue // pings
				}
				if seq != next {
					results <- result{c.Transport(), time.Time{}, fmt.Errorf("got seq %d, want %d", seq, next)}
					return
				}
				next++
			}
			results <- result{c.Transport(), time.Now(), nil}
		}()
	}

	start := time.Now()
	var pwg sync.WaitGroup
	pubErr := make(chan error, publishes)
	for p := 0; p < 4; p++ { // four backends publishing at once
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := p; i < publishes; i += 4 {
				body := fmt.Sprintf(`{"channel":"news","data":{"n":%d,"text":"breaking news item %d"}}`, i, i)
				if r := post(e.url+"/api/publish", body); !strings.HasPrefix(r, "200") {
					pubErr <- fmt.Errorf("publish %d: %s", i, r)
					return
				}
			}
		}()
	}
	pwg.Wait()
	published := time.Since(start)
	close(pubErr)
	for err := range pubErr {
		t.Fatal(err)
	}

	last := map[string]time.Duration{}
	for i := 0; i < sessions; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("%s session: %v", r.transport, r.err)
		}
		if d := r.last.Sub(start); d > last[r.transport] {
			last[r.transport] = d
		}
	}
	t.Logf("1,000 publishes (4 publishers) took %v; all 2,000 sessions had every message, in order, after:", published.Round(time.Millisecond))
	for _, tr := range transports {
		t.Logf("  %-14s %v", tr, last[tr].Round(time.Millisecond))
	}

	// The stalled session was disconnected for overflowing its queue.
	if got := post(stalled+"/xhr", ""); got != "200 c[3009,\"Send queue overflow\"]\n" {
		t.Fatalf("stalled session: %q", got)
	}
	e.obs.mu.Lock()
	dropped := e.obs.dropped
	e.obs.mu.Unlock()
	if dropped != 1 {
		t.Fatalf("dropped subscribers counted: %d, want 1", dropped)
	}
}
