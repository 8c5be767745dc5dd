package main

import (
	"log/slog"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// mountHub mounts the pub/sub hub's SockJS service and its HTTP API, and
// returns the SockJS handlers for graceful shutdown. (Filled in by the hub
// work, issue 5.)
func mountHub(r *mux.Router, cfg Config, opts transport.Options, m *metrics.Metrics, log *slog.Logger) []*transport.Handler {
	return nil
}
