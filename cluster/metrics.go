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
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	waiting     prometheus.Gauge
	unavailable *prometheus.CounterVec
}

// NewMetrics registers sockjs_cluster_forwarded_requests_total{endpoint,
// result}, sockjs_cluster_forward_seconds{endpoint},
// sockjs_cluster_store_waiting_requests and
// sockjs_cluster_store_unavailable_total{endpoint} on reg.
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
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sockjs", Subsystem: "cluster", Name: "store_waiting_requests",
			Help: "Session requests waiting now for the owner store to answer (its recovery grace, or an outage), at most -cluster-store-wait each.",
		}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sockjs", Subsystem: "cluster", Name: "store_unavailable_total",
			Help: "Session requests answered 503 because the owner store did not answer within -cluster-store-wait, by endpoint.",
		}, []string{"endpoint"}),
	}
	reg.MustRegister(m.requests, m.latency, m.waiting, m.unavailable)
	return m
}

// Forwarded implements Observer.
func (m *Metrics) Forwarded(endpoint, result string, d time.Duration) {
	m.requests.WithLabelValues(endpoint, result).Inc()
	if result == "ok" {
		m.latency.WithLabelValues(endpoint).Observe(d.Seconds())
	}
}

// StoreWaiting implements Observer.
func (m *Metrics) StoreWaiting(delta int) { m.waiting.Add(float64(delta)) }

// StoreUnavailable implements Observer.
func (m *Metrics) StoreUnavailable(endpoint string) { m.unavailable.WithLabelValues(endpoint).Inc() }
