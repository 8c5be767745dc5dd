package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"time"
)

// DefaultDrainDelay is -drain-delay's default: long enough for a balancer
// that polls /readyz every second or two, or for Kubernetes to take the
// pod's endpoint out of its Services, to stop sending new sessions here.
const DefaultDrainDelay = 5 * time.Second

// DrainConfig is the drain before a graceful shutdown (docs/operations.md).
type DrainConfig struct {
	Delay time.Duration
}

func (c *DrainConfig) register(fs *flag.FlagSet) {
	fs.DurationVar(&c.Delay, "drain-delay", DefaultDrainDelay, "on SIGTERM or SIGINT, how long /readyz answers 503 while everything is still served, before the graceful shutdown (-shutdown-timeout) begins; a second signal ends it early; 0: shut down at once")
}

// drain is the first step of a graceful stop: /readyz answers 503 at
// once, and everything (open sessions and new requests alike) is still
// served for delay, so that the balancer stops sending new sessions here
// before any is closed. It returns when delay has passed or ctx ends
// (a second signal). What runs between drain and shutdown runs on a node
// that no balancer sends new sessions to.
func (s *server) drain(ctx context.Context, delay time.Duration) {
	s.stopping.Store(true)
	if delay <= 0 {
		return
	}
	// A keep-alive connection would carry a client's next requests here
	// after the balancer took this node out: every answer from now on
	// closes its connection (closeWhileDraining), so the next request
	// opens one the balancer sends elsewhere. Idle connections are not
	// closed at once: a request the balancer is sending on one as it
	// closes would be lost, and haproxy then drops the client's
	// connection without an answer. Requests in flight, websockets and
	// streams are not touched.
	start := time.Now()
	s.log.Info("draining: /readyz answers 503, still serving", "drain_delay", delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	cut := false
	select {
	case <-t.C:
	case <-ctx.Done():
		cut = true
	}
	s.log.Info("drain done", "took", time.Since(start).Round(time.Millisecond), "cut_short_by_signal", cut)
}

// untilSignal is a context that ends at the first value from sigs, for
// the drain: the first signal started the stop, the next one hurries it.
func untilSignal(sigs <-chan os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// closeWhileDraining answers every request with Connection: close once
// the drain has begun (over HTTP/2: a graceful GOAWAY). A keep-alive
// connection would carry a client's or a balancer's next requests here
// after this node was taken out; closed after an answer, the next request
// opens a connection that the balancer sends elsewhere. Idle connections
// are not closed at the drain's start: a peer may be sending on one at
// that moment, and a POST cut that way is retried by no balancer.
// Websocket upgrades keep their own Connection header.
func (s *server) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining() && r.Header.Get("Upgrade") == "" {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
