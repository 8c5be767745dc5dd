package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/bridge"
)

// StartBuckets resolve fork+exec times, from 100µs to 1s.
var StartBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// Exec records the exec bridge's process events (cmd/server -exec) as
// Prometheus metrics labelled by service, the URL prefix a program is
// mounted at: few, and fixed by the operator. It implements
// bridge.Observer.
type Exec struct {
	running *prometheus.GaugeVec
	started *prometheus.CounterVec
	exited  *prometheus.CounterVec
	killed  *prometheus.CounterVec
	refused *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

var _ bridge.Observer = (*Exec)(nil)

// NewExec builds the exec metrics and registers them on reg.
func NewExec(reg prometheus.Registerer) *Exec {
	e := &Exec{
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "exec_processes_running", Help: "Programs started for sessions and not reaped yet."}, []string{"service"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "exec_processes_started_total", Help: "Programs started for sessions."}, []string{"service"}),
		exited:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "exec_processes_exited_total", Help: "Programs reaped, by status class: ok (0), error (1-255), signal."}, []string{"service", "status"}),
		killed:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "exec_processes_killed_total", Help: "Programs still running when the grace period after SIGTERM ran out; their process group got SIGKILL."}, []string{"service"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "exec_sessions_refused_total", Help: "Sessions that got no program, by reason: max_procs (close 3013), per_address (close 3015), start_failed (close 3011)."}, []string{"service", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "exec_start_seconds", Help: "Time fork and exec of a program took.", Buckets: StartBuckets}, []string{"service"}),
	}
	reg.MustRegister(e.running, e.started, e.exited, e.killed, e.refused, e.latency)
	return e
}

// Exec returns the exec metrics, registered on m's registry on first use.
func (m *Metrics) Exec() *Exec {
	m.execOnce.Do(func() { m.exec = NewExec(m.reg) })
	return m.exec
}

type execState struct {
	execOnce sync.Once
	exec     *Exec
}

// ProcessStarted implements bridge.Observer.
func (e *Exec) ProcessStarted(name string, d time.Duration) {
	e.started.WithLabelValues(name).Inc()
	e.running.WithLabelValues(name).Inc()
	e.latency.WithLabelValues(name).Observe(d.Seconds())
}

// ProcessExited implements bridge.Observer.
func (e *Exec) ProcessExited(name string, c bridge.ExitClass, _ time.Duration) {
	e.running.WithLabelValues(name).Dec()
	e.exited.WithLabelValues(name, c.String()).Inc()
}

// ProcessKilled implements bridge.Observer.
func (e *Exec) ProcessKilled(name string) { e.killed.WithLabelValues(name).Inc() }

// ProcessRefused implements bridge.Observer.
func (e *Exec) ProcessRefused(name string, r bridge.Refusal) {
	e.refused.WithLabelValues(name, r.String()).Inc()
}
