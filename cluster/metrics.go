package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts forwarded requests; it implements
// Observer. Labels take bounded values only: the seven
// HTTP session endpoints and the results ok, owner_gone, moved, retried,
// timeout, client_gone and error.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers sockjs_cluster_forwarded_requests_total{endpoint,
// result} and sockjs_cluster_forward_seconds{endpoint} on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sockjs", Subsystem: "cluster", Name: "forwarded_requests_total",
			Help: "Session requests forwarded to the node owning the session, by endpoint and result (ok, owner_gone, moved, retried, timeout, client_gone, error).",
		}, []string{"endpoint", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sockjs", Subsystem: "cluster", Name: "forward_seconds",
			Help:    "From receiving a request for another node's session to that node's response headers (a poll waits for data there).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// Forwarded implements Observer.
func (m *Metrics) Forwarded(endpoint, result string, d time.Duration) {
	m.requests.WithLabelValues(endpoint, result).Inc()
	if result == "ok" {
		m.latency.WithLabelValues(endpoint).Observe(d.Seconds())
	}
}
