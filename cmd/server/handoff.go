package main

import (
	"context"
	"flag"
	"time"

	"github.com/sockjsd/sockjsd/cluster"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// HandOffConfig is session hand-off's part of the config: in cluster mode
// a node that shuts down moves its HTTP hub and proxied sessions to the
// other nodes instead of closing them (docs/cluster.md, "Rolling deploys and session
// hand-off").
type HandOffConfig struct {
	Enabled  bool
	Timeout  time.Duration
	MaxBytes int
	TTL      time.Duration
}

func (c *HandOffConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "handoff", true, "with -redis: at shutdown, hand the HTTP sessions of the hub and of -proxy services off to the other nodes (the page and the backend notice nothing) instead of closing them with 1001")
	fs.DurationVar(&c.Timeout, "handoff-timeout", 10*time.Second, "bound on handing every session off at shutdown; sessions not handed off by then are closed with 1001")
	fs.IntVar(&c.MaxBytes, "handoff-max-bytes", transport.DefaultMaxHandOffBytes, "largest hand-off record of one session (its queued messages both ways and the hub's state); a session over it is closed with 1001 at shutdown")
	fs.DurationVar(&c.TTL, "cluster-handoff-ttl", cluster.DefaultHandOffTTL, "how long a handed-off session waits in Redis for its next request, which resumes it on the node it reaches")
}

// The server's metrics count hand-offs (transport finds them by type
// assertion).
var _ transport.HandOffObserver = (*metrics.Metrics)(nil)

// handOff hands the sessions of every service that opted in off to the
// cluster, bounded by -handoff-timeout, and logs one line with the counts.
// What is not handed off ends with 1001 in the shutdown that follows.
func (s *server) handOff(ctx context.Context) {
	if s.handOffTimeout <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.handOffTimeout)
	defer cancel()
	start := time.Now()
	var total transport.HandOffResult
	for _, h := range s.services {
		r := h.HandOff(ctx)
		total.HandedOff += r.HandedOff
		total.Failed += r.Failed
	}
	took := time.Since(start)
	rate := 0.0
	if took > 0 {
		rate = float64(total.HandedOff) / took.Seconds()
	}
	s.log.Info("drain: sessions handed off", "handed_off", total.HandedOff, "failed", total.Failed,
		"took", took.Round(time.Millisecond), "per_second", int(rate))
}
