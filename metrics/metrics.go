package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/session"
)

// Namespace prefixes every metric name.
const Namespace = "sockjs"

// LatencyBuckets go from 100µs to 30s, so that websocket delivery (well
// under a millisecond) and polling (tens of milliseconds to the heartbeat
// interval) are both resolved.
var LatencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// LifetimeBuckets cover sessions from a second to a day.
var LifetimeBuckets = []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}

const nt = session.NumTransports

var frameKinds = [...]session.FrameKind{session.FrameOpen, session.FrameHeartbeat, session.FrameMessages, session.FrameClose}

func frameIndex(k session.FrameKind) int {
	switch k {
	case session.FrameOpen:
		return 0
	case session.FrameHeartbeat:
		return 1
	case session.FrameMessages:
		return 2
	}
	return 3
}

// statusClasses label HTTP answers: 2xx, 3xx, 4xx, 5xx.
var statusClasses = [...]string{"2xx", "3xx", "4xx", "5xx"}

func statusIndex(code int) int {
	switch {
	case code < 300:
		return 0
	case code < 400:
		return 1
	case code < 500:
		return 2
	}
	return 3
}

// Metrics is a session.Observer backed by Prometheus collectors.
type Metrics struct {
	opened     [nt]prometheus.Counter
	open       [nt]prometheus.Gauge
	closed     [nt][session.NumCauses]prometheus.Counter
	msgsIn     [nt]prometheus.Counter
	bytesIn    [nt]prometheus.Counter
	msgsOut    [nt]prometheus.Counter
	bytesOut   [nt]prometheus.Counter
	frames     [nt][len(frameKinds)]prometheus.Counter
	timeToOpen [nt]prometheus.Observer
	lifetime   [nt]prometheus.Observer
	delivery   [nt]prometheus.Observer
	receive    [nt]prometheus.Observer
	pingRTT    *prometheus.HistogramVec // service, transport
	wsRTT      *prometheus.HistogramVec // service, transport: websocket ping/pong frames
	rttMu      sync.RWMutex
	rttBy      map[string]*[nt]prometheus.Observer // pingRTT's children by service
	wsRTTBy    map[string]*[nt]prometheus.Observer // wsRTT's
	dropped    [nt]prometheus.Counter
	fanWaits   prometheus.Counter
	resets     [nt][len(resetReasons)]prometheus.Counter
	requests   [session.NumEndpoints][len(statusClasses)]prometheus.Counter
	reqTime    [session.NumEndpoints]prometheus.Observer

	reg prometheus.Registerer // for metrics built on first use (exec.go)
	execState
	limitHits [session.NumLimits]prometheus.Counter
	handedOff prometheus.Counter
	resumed   [nt]prometheus.Counter
}

// New builds the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{reg: reg}
	tl := []string{"transport"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(v)
		return v
	}
	opened := counter("sessions_opened_total", "Sessions opened.", tl...)
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "sessions_open", Help: "Sessions open now."}, tl)
	reg.MustRegister(open)
	closed := counter("sessions_closed_total", "Sessions closed, by reason: client, server, timeout, limit, error, shutdown.", "transport", "reason")
	msgsIn := counter("messages_received_total", "Messages received from clients.", tl...)
	bytesIn := counter("received_bytes_total", "Bytes of messages received from clients (message payloads, unframed).", tl...)
	msgsOut := counter("messages_sent_total", "Messages written to clients.", tl...)
	bytesOut := counter("sent_bytes_total", "Bytes of frames written to clients, with framing.", tl...)
	frames := counter("frames_written_total", "Frames written to clients, by kind: open, heartbeat, messages, close.", "transport", "kind")
	timeToOpen := histogram("time_to_open_seconds", "From a session's first request to its open frame being written.", LatencyBuckets, tl...)
	lifetime := histogram("session_lifetime_seconds", "From a session's first request to its close.", LifetimeBuckets, tl...)
	delivery := histogram("delivery_delay_seconds", "From Send to the message's bytes being written to the client's connection or response; for polling this includes waiting for the next poll.", LatencyBuckets, tl...)
	receive := histogram("receive_delay_seconds", "From a message being read off the client's connection to the application's Recv returning it.", LatencyBuckets, tl...)
	m.pingRTT = histogram("ping_rtt_seconds", "Round trip browsers get: from the server writing a ping to it reading the pong (the service ping answered by sockjsd.js, and the hub's ping under service=\"hub\").", LatencyBuckets, "service", "transport")
	// A metric of its own, not a source label on ping_rtt_seconds: a pong
	// frame is answered by the client's websocket stack, before any
	// script runs, so it is shorter than a message round trip, and
	// queries over ping_rtt_seconds keep meaning what they meant.
	m.wsRTT = histogram("websocket_ping_rtt_seconds", "Websocket round trip: from the server writing a websocket ping frame to it reading the matching pong, which the client's websocket stack (a browser's, with no script) answers by itself. Websocket transports only.", LatencyBuckets, "service", "transport")
	dropped := counter("hub_subscribers_dropped_total", "Hub subscribers disconnected because their send queue overflowed (close 3009).", tl...)
	m.fanWaits = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "hub_fanout_waits_total",
		Help: "Hub publishes that waited for room in their channel's fan-out queue (-hub-fanout-queue-bytes): the fan-out falls behind its publishers."})
	reg.MustRegister(m.fanWaits)
	resets := counter("hub_subscriber_resets_total", "Live hub subscribers told recovered:false because their channel's sequence did not continue, by reason: epoch (the channel started again), gap (messages lost: history no longer held them).", "transport", "reason")
	requests := counter("http_requests_total", "HTTP requests to session endpoints, by endpoint and status class.", "endpoint", "code")
	reqTime := histogram("http_request_duration_seconds", "Duration of HTTP requests to session endpoints (a poll lasts until it has something to answer; a streaming request until its response limit).", LatencyBuckets, "endpoint")

	limitHits := counter("limit_hits_total", "Requests, messages and sessions refused by a limit, by limit: id-length, request-info, sessions, body-size, message-size, concurrent-sends, body-budget, body-read-timeout, send-queue, handoff.", "limit")
	for l := session.Limit(0); l < session.NumLimits; l++ {
		m.limitHits[l] = limitHits.WithLabelValues(l.String())
	}

	m.handedOff = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "sessions_handed_off_total",
		Help: "HTTP sessions this node handed off to the cluster when it drained, for another node to resume (cluster mode)."})
	reg.MustRegister(m.handedOff)
	resumed := counter("sessions_resumed_total", "HTTP sessions this node resumed from a drained node's hand-off (cluster mode), by transport.", tl...)

	kindNames := [...]string{"open", "heartbeat", "messages", "close"}
	for t := session.Transport(0); t < nt; t++ {
		n := t.String()
		m.opened[t] = opened.WithLabelValues(n)
		m.open[t] = open.WithLabelValues(n)
		for r := session.CloseCause(0); r < session.NumCauses; r++ {
			m.closed[t][r] = closed.WithLabelValues(n, r.String())
		}
		m.msgsIn[t] = msgsIn.WithLabelValues(n)
		m.bytesIn[t] = bytesIn.WithLabelValues(n)
		m.msgsOut[t] = msgsOut.WithLabelValues(n)
		m.bytesOut[t] = bytesOut.WithLabelValues(n)
		for k := range frameKinds {
			m.frames[t][k] = frames.WithLabelValues(n, kindNames[k])
		}
		m.timeToOpen[t] = timeToOpen.WithLabelValues(n)
		m.lifetime[t] = lifetime.WithLabelValues(n)
		m.delivery[t] = delivery.WithLabelValues(n)
		m.receive[t] = receive.WithLabelValues(n)
		m.dropped[t] = dropped.WithLabelValues(n)
		m.resumed[t] = resumed.WithLabelValues(n)
		for i, r := range resetReasons {
			m.resets[t][i] = resets.WithLabelValues(n, r)
		}
	}
	for e := session.Endpoint(0); e < session.NumEndpoints; e++ {
		for c := range statusClasses {
			m.requests[e][c] = requests.WithLabelValues(e.String(), statusClasses[c])
		}
		m.reqTime[e] = reqTime.WithLabelValues(e.String())
	}
	return m
}

var _ session.Observer = (*Metrics)(nil)

func ok(t session.Transport) bool { return t < nt }

// SessionOpened implements session.Observer.
func (m *Metrics) SessionOpened(t session.Transport) {
	if ok(t) {
		m.opened[t].Inc()
		m.open[t].Inc()
	}
}

// TimeToOpen implements session.Observer.
func (m *Metrics) TimeToOpen(t session.Transport, d time.Duration) {
	if ok(t) {
		m.timeToOpen[t].Observe(d.Seconds())
	}
}

// SessionClosed implements session.Observer.
func (m *Metrics) SessionClosed(t session.Transport, r session.CloseCause, lifetime time.Duration) {
	if ok(t) && r < session.NumCauses {
		m.open[t].Dec()
		m.closed[t][r].Inc()
		m.lifetime[t].Observe(lifetime.Seconds())
	}
}

// MessageReceived implements session.Observer.
func (m *Metrics) MessageReceived(t session.Transport, bytes int) {
	if ok(t) {
		m.msgsIn[t].Inc()
		m.bytesIn[t].Add(float64(bytes))
	}
}

// FrameWritten implements session.Observer.
func (m *Metrics) FrameWritten(t session.Transport, k session.FrameKind, messages, bytes int) {
	if ok(t) {
		m.frames[t][frameIndex(k)].Inc()
		m.bytesOut[t].Add(float64(bytes))
		if messages > 0 {
			m.msgsOut[t].Add(float64(messages))
		}
	}
}

// DeliveryDelay implements session.Observer.
func (m *Metrics) DeliveryDelay(t session.Transport, d time.Duration) {
	if ok(t) {
		m.delivery[t].Observe(d.Seconds())
	}
}

// ReceiveDelay implements session.Observer.
func (m *Metrics) ReceiveDelay(t session.Transport, d time.Duration) {
	if ok(t) {
		m.receive[t].Observe(d.Seconds())
	}
}

// HTTPRequest implements session.Observer.
func (m *Metrics) HTTPRequest(e session.Endpoint, status int, d time.Duration) {
	if e < session.NumEndpoints {
		m.requests[e][statusIndex(status)].Inc()
		m.reqTime[e].Observe(d.Seconds())
	}
}

// HubService is the service label of the hub's own pings.
const HubService = "hub"

// LimitHit implements session.Observer. The transport is not a label:
// some limits refuse a request before its transport is known.
func (m *Metrics) LimitHit(_ session.Transport, l session.Limit) {
	if l < session.NumLimits {
		m.limitHits[l].Inc()
	}
}

// ObservePingRTT records the round trip of a hub ping on transport t.
func (m *Metrics) ObservePingRTT(t session.Transport, d time.Duration) {
	m.ObserveRTT(HubService, t, d)
}

// ObserveRTT records the round trip of a service ping (transport.Options
// PingInterval) for a session of service on transport t. Services are
// few and fixed by the application, so the label set stays small.
func (m *Metrics) ObserveRTT(service string, t session.Transport, d time.Duration) {
	if ok(t) {
		m.rttFor(m.pingRTT, &m.rttBy, service, false)[t].Observe(d.Seconds())
	}
}

// ObserveWebSocketRTT records the round trip of a websocket ping frame
// (transport.WebSocketRTTObserver) for a session of service on t.
func (m *Metrics) ObserveWebSocketRTT(service string, t session.Transport, d time.Duration) {
	if t == session.WebSocket || t == session.RawWebSocket {
		m.rttFor(m.wsRTT, &m.wsRTTBy, service, true)[t].Observe(d.Seconds())
	}
}

// rttFor is the service's histograms of vec, kept in *by, made on first
// use, so that recording allocates nothing after that. wsOnly: only the
// websocket transports' exist (no series that can never move).
func (m *Metrics) rttFor(vec *prometheus.HistogramVec, by *map[string]*[nt]prometheus.Observer, service string, wsOnly bool) *[nt]prometheus.Observer {
	m.rttMu.RLock()
	o := (*by)[service]
	m.rttMu.RUnlock()
	if o != nil {
		return o
	}
	m.rttMu.Lock()
	defer m.rttMu.Unlock()
	if o = (*by)[service]; o == nil {
		o = new([nt]prometheus.Observer)
		for t := session.Transport(0); t < nt; t++ {
			if !wsOnly || t == session.WebSocket || t == session.RawWebSocket {
				o[t] = vec.WithLabelValues(service, t.String())
			}
		}
		if *by == nil {
			*by = make(map[string]*[nt]prometheus.Observer)
		}
		(*by)[service] = o
	}
	return o
}

// SubscriberDropped counts a hub subscriber disconnected for overflowing
// its send queue.
func (m *Metrics) SubscriberDropped(t session.Transport) {
	if ok(t) {
		m.dropped[t].Inc()
	}
}

// FanOutWaited counts a hub publish that waited for room in its channel's
// fan-out queue (hub.FanOutObserver).
func (m *Metrics) FanOutWaited() { m.fanWaits.Inc() }

// resetReasons are hub.ResetEpoch and hub.ResetGap (spelled out: metrics
// does not import the hub).
var resetReasons = [...]string{"epoch", "gap"}

// SubscriberReset counts a live hub subscriber told recovered:false
// (hub.ResetObserver): reason is "epoch" or "gap".
func (m *Metrics) SubscriberReset(t session.Transport, reason string) {
	if !ok(t) {
		return
	}
	for i, r := range resetReasons {
		if r == reason {
			m.resets[t][i].Inc()
		}
	}
}

// SessionHandedOff counts a session this node handed off
// (transport.HandOffObserver).
func (m *Metrics) SessionHandedOff(session.Transport) { m.handedOff.Inc() }

// SessionResumed counts a session resumed here from another node's
// hand-off (transport.HandOffObserver).
func (m *Metrics) SessionResumed(t session.Transport) {
	if ok(t) {
		m.resumed[t].Inc()
	}
}
