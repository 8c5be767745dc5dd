package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Observer is told what deliveries do, for metrics. Its methods are called
// from the delivery workers and from Enqueue (QueueLength under the
// memory queue's lock), so they must be cheap, safe for concurrent use,
// and must not call the Notifier. Types are the event's type, or "other" for a
// type this package does not know (an event another writer pushed to
// Redis), so that a label's values stay bounded.
type Observer interface {
	// Delivered: one POST ended, with a backend.Outcome ("ok", "timeout",
	// "status", "unreachable", ...) after d.
	Delivered(typ, outcome string, d time.Duration)
	// Retried: a POST failed and the event will be posted again.
	Retried(typ string)
	// Dropped: an event left the queue undelivered; reason is "expired"
	// (RetryFor passed) or "malformed" (a Redis entry that is not an
	// Event).
	Dropped(typ, reason string)
	// QueueFull: Enqueue refused an event with ErrQueueFull.
	QueueFull()
	// QueueLength: events waiting, counted by the queue (memory: this
	// node's; Redis: all partitions' lists, as seen by this node's poll).
	QueueLength(n int)
}

type nopObserver struct{}

func (nopObserver) Delivered(string, string, time.Duration) {}
func (nopObserver) Retried(string)                          {}
func (nopObserver) Dropped(string, string)                  {}
func (nopObserver) QueueFull()                              {}
func (nopObserver) QueueLength(int)                         {}

// typeLabel bounds a metric label to the known event types.
func typeLabel(t string) string {
	switch t {
	case SessionOpened, SessionClosed, UserOnline, UserOffline:
		return t
	}
	return "other"
}

// Metrics is an Observer that records Prometheus metrics (namespace
// "sockjs", like package metrics):
//
//	sockjs_webhook_deliveries_total{type,outcome}  POSTs by outcome
//	sockjs_webhook_delivery_seconds{type}          time of one POST
//	sockjs_webhook_retries_total{type}             failed POSTs to be retried
//	sockjs_webhook_dropped_total{reason}           events given up
//	sockjs_webhook_queue_full_total                events refused by Enqueue
//	sockjs_webhook_queue_length                    events waiting
//
// Labels are bounded: event types (or "other"), backend outcomes and drop
// reasons; never an id, a user or the URL.
type Metrics struct {
	deliveries *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	full       prometheus.Counter
	length     prometheus.Gauge
}

var _ Observer = (*Metrics)(nil)

// DeliveryBuckets resolve a POST's time from 1ms to the default timeout.
var DeliveryBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics builds the webhook metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "sockjs"
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_deliveries_total", Help: "Webhook POSTs, by event type and outcome (ok, timeout, status, unreachable, busy, canceled)."}, []string{"type", "outcome"}),
		seconds:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "webhook_delivery_seconds", Help: "Time one webhook POST took, whatever its outcome.", Buckets: DeliveryBuckets}, []string{"type"}),
		retries:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_retries_total", Help: "Failed webhook POSTs that will be retried after a backoff."}, []string{"type"}),
		dropped:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_dropped_total", Help: "Webhook events given up, by reason: expired (not delivered within RetryFor), malformed (a queued entry that is not an event)."}, []string{"reason"}),
		full:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "webhook_queue_full_total", Help: "Webhook events refused because the queue held its limit."}),
		length:     prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "webhook_queue_length", Help: "Webhook events waiting for delivery (Redis: in all partitions, as seen by this node)."}),
	}
	// Every series exists from the start, at zero, so that rate() works
	// on the first increment.
	for _, t := range []string{SessionOpened, SessionClosed, UserOnline, UserOffline} {
		m.deliveries.WithLabelValues(t, "ok")
		m.seconds.WithLabelValues(t)
		m.retries.WithLabelValues(t)
	}
	for _, r := range []string{DropExpired, DropMalformed} {
		m.dropped.WithLabelValues(r)
	}
	reg.MustRegister(m.deliveries, m.seconds, m.retries, m.dropped, m.full, m.length)
	return m
}

// Delivered implements Observer.
func (m *Metrics) Delivered(typ, outcome string, d time.Duration) {
	m.deliveries.WithLabelValues(typ, outcome).Inc()
	m.seconds.WithLabelValues(typ).Observe(d.Seconds())
}

// Retried implements Observer.
func (m *Metrics) Retried(typ string) { m.retries.WithLabelValues(typ).Inc() }

// Dropped implements Observer.
func (m *Metrics) Dropped(_, reason string) { m.dropped.WithLabelValues(reason).Inc() }

// QueueFull implements Observer.
func (m *Metrics) QueueFull() { m.full.Inc() }

// QueueLength implements Observer.
func (m *Metrics) QueueLength(n int) { m.length.Set(float64(n)) }

// Drop reasons (Observer.Dropped, sockjs_webhook_dropped_total).
const (
	DropExpired   = "expired"
	DropMalformed = "malformed"
)
