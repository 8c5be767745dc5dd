package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the gateway's requests to backends on Prometheus:
// sockjs_proxy_requests_total{service,hook,outcome} and
// sockjs_proxy_request_seconds{service,hook}. service is a configured
// prefix (a bounded set), hook connect, message or close, outcome a
// backend.Outcome.
type Metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// NewMetrics registers the gateway's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sockjs", Name: "proxy_requests_total",
			Help: "Requests to proxied services' backends, by service, hook (connect, message, close) and outcome (ok, timeout, unreachable, status, bad_answer, too_large, busy, canceled).",
		}, []string{"service", "hook", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sockjs", Name: "proxy_request_seconds",
			Help:    "Time of requests to proxied services' backends, by service and hook.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service", "hook"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// BackendCall implements Observer.
func (m *Metrics) BackendCall(service, hook, outcome string, d time.Duration) {
	m.requests.WithLabelValues(service, hook, outcome).Inc()
	m.seconds.WithLabelValues(service, hook).Observe(d.Seconds())
}
