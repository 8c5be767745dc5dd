package main

import (
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// mountMetrics serves /metrics (our metrics, the Go runtime's and the
// process's) and makes the metrics the sessions' observer. Features
// register their own collectors on the returned registry.
func mountMetrics(r *mux.Router, opts *transport.Options) (*metrics.Metrics, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	opts.Session.Observer = m
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return m, reg
}
