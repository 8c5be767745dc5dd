// Package metrics records SockJS session events as Prometheus metrics,
// labelled by transport so that operators can compare websocket, streaming
// and polling on real traffic.
//
// The core packages never import Prometheus: they report events to small
// observer interfaces, and this package implements them. New builds the
// collectors and registers them; the *Metrics it returns is the observer
// to hand to each of them:
//
//	reg := prometheus.NewRegistry()
//	m := metrics.New(reg)
//	opts := transport.Options{Session: session.Options{Observer: m}}
//	hub.New(hub.Options{Observer: m})                  // hub round trips, drops, resets
//	bridge.New(bridge.Options{Observer: m.Exec(), ...}) // exec processes
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// As a session.Observer it counts sessions, messages, frames, HTTP requests
// and limit hits, and times opening, delivery and receiving. It also
// implements transport.RTTObserver and transport.WebSocketRTTObserver, so
// the same Metrics given as the session observer records the service
// ping's and websocket pings' round trips. Exec (Metrics.Exec, or NewExec
// on its own) implements bridge.Observer.
//
// Labels take bounded values only (transports, close reasons, endpoints,
// limits, and service prefixes the operator chose): never a session id,
// URL or user value, so the number of series is fixed. Every labelled
// series is resolved when Metrics is built and kept in arrays indexed by
// transport, reason or endpoint: recording an event is an atomic add or a
// lock-free histogram observation, with no allocation and no global lock,
// because it happens on every message of every session.
//
// Names lists every metric name. docs/metrics.md describes each metric and
// how the histograms decompose a browser's latency; metrics/grafana holds
// a dashboard.
package metrics
