package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// hubStep and hubResult mirror cmd/loadgen's hub mode output.
type hubStep struct {
	Rate          float64 `json:"rate"`
	Published     int64   `json:"published"`
	PublishErrors int64   `json:"publish_errors"`
	Seconds       float64 `json:"seconds"`
	Deliveries    int64   `json:"deliveries"`
	DeliveriesPS  float64 `json:"deliveries_per_sec"`
	Lost          int64   `json:"lost"`
	Dups          int64   `json:"dups"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
}

type hubResult struct {
	Transport  string    `json:"transport"`
	Sessions   int       `json:"sessions"`
	Subscribed int64     `json:"subscribed"`
	Steps      []hubStep `json:"steps"`
	MaxDelivPS float64   `json:"max_sustained_deliveries_per_sec"`
	MaxDelivAt float64   `json:"max_sustained_rate"`
	Errors     int64     `json:"errors"`
	FirstError string    `json:"first_error"`
	ClientCPU  float64   `json:"client_cpu_seconds"` // the load generator's, over the first step
	Raw        bool      `json:"raw_subscribers"`
	// Filled in here.
	cpuPer100k float64 // server CPU-s per 100k deliveries in the first step
	lgPer100k  float64 // the load generator's
	// The server's own view of the first step: sockjs_delivery_delay_seconds
	// (Send to written) on /metrics, p50 and p99 in ms.
	srvP50, srvP99 float64
	// bare is the floor under the first step (websocket only): barefan's
	// raw write loop to as many connections at the same rate.
	bare *bareFan
	err  string
}

// hubServer is sockjsd for a fan-out of n subscribers: the load generator
// is a handful of addresses, so the per-address subscription limit (1,000
// by default, against one client opening thousands) is raised to n.
func hubServer(n int) server {
	s := sockjsd()
	base := s.cmd
	s.cmd = func(p string) *exec.Cmd {
		c := base(p)
		c.Args = append(c.Args, "-hub-max-subscriptions-per-address", strconv.Itoa(n))
		return c
	}
	return s
}

// hubRuns measures the hub's fan-out on a fresh sockjsd per transport:
// every subscriber on one channel, the backend API publishing at each of
// -hub-rates in turn.
func hubRuns(deadline time.Time) []hubResult {
	var out []hubResult
	for _, l := range []load{{"websocket", *hubWS}, {"xhr-streaming", *hubHTTP}, {"xhr-polling", *hubHTTP}} {
		if time.Now().After(deadline) {
			break
		}
		r := hubResult{Transport: l.transport, Sessions: l.sessions}
		srv, err := start(hubServer(l.sessions))
		if err != nil {
			r.err = err.Error()
			out = append(out, r)
			continue
		}
		var cpu0, cpu float64
		var h0, h1 buckets
		metricsURL := "http://" + srv.addr + "/metrics"
		const hist = "sockjs_delivery_delay_seconds"
		err = runLoadgen([]string{"-mode", "hub", "-url", "http://" + srv.addr + "/hub", "-transport", l.transport,
			"-n", strconv.Itoa(l.sessions), "-rates", *hubRates, "-d", hubStepD.String(), "-p99-limit", "100ms",
			"-local-addrs", strconv.Itoa(localAddrs(l.sessions)), "-connect-timeout", "3m"},
			10*time.Minute, func() {
				h0 = scrapeHistogram(metricsURL, hist)
				cpu0 = cpuSeconds(srv.pid())
			}, func() {
				cpu = cpuSeconds(srv.pid()) - cpu0
				h1 = scrapeHistogram(metricsURL, hist)
			}, &r)
		srv.stop()
		if err != nil {
			r.err = err.Error()
		} else if r.Errors > 0 {
			r.err = fmt.Sprintf("%d errors: %s", r.Errors, r.FirstError)
		}
		if len(r.Steps) > 0 && r.Steps[0].Deliveries > 0 {
			r.cpuPer100k = cpu / float64(r.Steps[0].Deliveries) * 100000
			r.lgPer100k = r.ClientCPU / float64(r.Steps[0].Deliveries) * 100000
		}
		r.srvP50, r.srvP99 = 1000*quantile(h0, h1, .50), 1000*quantile(h0, h1, .99)
		for _, s := range r.Steps {
			fmt.Fprintf(os.Stderr, "hub %-14s %5d  %6.0f/s publishes: %9.0f deliveries/s p50 %6.1f ms p99 %6.1f ms lost %d dups %d\n",
				l.transport, r.Subscribed, s.Rate, s.DeliveriesPS, s.P50ms, s.P99ms, s.Lost, s.Dups)
		}
		if r.err != "" {
			fmt.Fprintf(os.Stderr, "hub %-14s %5d  %s\n", l.transport, l.sessions, r.err)
		}
		if l.transport == "websocket" && len(r.Steps) > 0 {
			bf := bareFanOut(l.sessions, r.Steps[0].Rate, *hubStepD)
			r.bare = &bf
			fmt.Fprintf(os.Stderr, "hub %-14s %5d  %s\n", l.transport, l.sessions, bf.note())
		}
		out = append(out, r)
	}
	return out
}

// serverStats and soakResult mirror cmd/loadgen's soak mode output.
type serverStats struct {
	Goroutines float64 `json:"goroutines"`
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	RSS        float64 `json:"rss_bytes"`
	Sessions   float64 `json:"sessions_open"`
}

type soakTransport struct {
	Sessions     int64  `json:"sessions"`
	DialFailures int64  `json:"dial_failures"`
	Closed       int64  `json:"closed"`
	Abandoned    int64  `json:"abandoned"`
	Messages     int64  `json:"messages"`
	Lost         int64  `json:"lost"`
	Dups         int64  `json:"dups"`
	ServerClosed int64  `json:"server_closed"`
	FirstError   string `json:"first_error"`
}

type soakResult struct {
	Seconds       float64                   `json:"seconds"`
	Workers       int                       `json:"sessions_at_a_time_per_transport"`
	Transports    map[string]*soakTransport `json:"transports"`
	Baseline      serverStats               `json:"baseline"`
	Peak          serverStats               `json:"peak"`
	Final         serverStats               `json:"final"`
	SettleSeconds float64                   `json:"settle_seconds"`
	BackToBase    bool                      `json:"back_to_baseline"`
	Pass          bool                      `json:"pass"`
	Problems      []string                  `json:"problems"`
	err           string
	cpu           float64
}

// soakRun runs the load generator's soak against a fresh sockjsd.
func soakRun(d time.Duration) *soakResult {
	r := &soakResult{}
	srv, err := start(sockjsd())
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer srv.stop()
	fmt.Fprintf(os.Stderr, "soak: %v, %d sessions at a time per transport, then up to 3m for the server to settle\n", d, *soakWorkers)
	err = runLoadgen([]string{"-mode", "soak", "-url", "http://" + srv.addr + "/echo", "-n", strconv.Itoa(*soakWorkers),
		"-d", d.String(), "-local-addrs", "8"}, d+10*time.Minute, func() {}, func() {}, r)
	r.cpu = cpuSeconds(srv.pid())
	if err != nil {
		r.err = err.Error()
		r.Pass = false
	}
	fmt.Fprintf(os.Stderr, "soak: pass %v, back to baseline %v after %.0fs %s\n", r.Pass, r.BackToBase, r.SettleSeconds, r.err)
	return r
}
