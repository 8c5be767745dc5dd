package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// hubConfig is the hub mode's part of the flags.
type hubConfig struct {
	channel    string
	rates      string
	publishURL string
	p99Limit   time.Duration
	drain      time.Duration
	raw        bool
}

func (h *hubConfig) register() {
	flag.StringVar(&h.channel, "channel", "bench.fanout", "hub mode: the channel every session subscribes to")
	flag.StringVar(&h.rates, "rates", "10", "hub mode: publishes per second, one step each (-d long), in order; the ramp stops after the first step whose p99 is over -p99-limit or that lost a delivery")
	flag.StringVar(&h.publishURL, "publish-url", "", "hub mode: the backend publish API (default: /api/publish on -url's host)")
	flag.DurationVar(&h.p99Limit, "p99-limit", 100*time.Millisecond, "hub mode: the publish-to-delivery p99 a step must stay under to count as sustained")
	flag.DurationVar(&h.drain, "drain", 5*time.Second, "hub mode: how long after a step's last publish its deliveries may still arrive")
	flag.BoolVar(&h.raw, "hub-raw", true, "hub mode, websocket: read the subscribers' frames raw (gorilla, no SockJS client, no JSON decoding), so that the load generator costs less than the server's fan-out; false: through the Go SockJS client")
}

// HubStep is one publish rate's result.
type HubStep struct {
	Rate          float64 `json:"rate"`           // publishes per second asked for
	Published     int64   `json:"published"`      // publishes the API accepted
	PublishErrors int64   `json:"publish_errors"` // refused or failed publishes
	Skipped       int64   `json:"skipped"`        // ticks skipped: too many publishes in flight
	Seconds       float64 `json:"seconds"`
	Deliveries    int64   `json:"deliveries"`
	DeliveriesPS  float64 `json:"deliveries_per_sec"`
	Lost          int64   `json:"lost"` // expected (published × subscribers) less delivered, after the drain
	Gaps          int64   `json:"gaps"` // sequence numbers skipped on a subscriber
	Dups          int64   `json:"dups"` // sequence numbers seen twice or backwards
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
}

// HubResult is the hub mode's output. With -marks, "measure start" and
// "measure end" on stderr bracket the first step (publishing and drain).
type HubResult struct {
	Transport   string    `json:"transport"`
	Sessions    int       `json:"sessions"`
	Subscribed  int64     `json:"subscribed"`
	Steps       []HubStep `json:"steps"`
	MaxDelivPS  float64   `json:"max_sustained_deliveries_per_sec"` // best step with p99 <= limit, nothing lost
	MaxDelivAt  float64   `json:"max_sustained_rate"`
	Errors      int64     `json:"errors"`
	FirstError  string    `json:"first_error,omitempty"`
	P99LimitMs  float64   `json:"p99_limit_ms"`
	ChannelName string    `json:"channel"`
	// ClientCPU is the load generator's own CPU time (user and system)
	// over the first step, publishing and drain: set beside the
	// server's, it says which side saturated.
	ClientCPU float64 `json:"client_cpu_seconds"`
	Raw       bool    `json:"raw_subscribers"` // -hub-raw on websocket
}

// histogram counts delays in 100 µs buckets up to 30 s.
type histogram struct {
	counts [300000]atomic.Int64
	max    atomic.Int64 // µs
}

func (h *histogram) add(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[min(us/100, int64(len(h.counts)-1))].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// quantile is the upper edge of the bucket holding quantile q, in ms.
func (h *histogram) quantile(q float64, total int64) float64 {
	if total == 0 {
		return 0
	}
	want := int64(q*float64(total-1)) + 1
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= want {
			return float64(i+1) / 10
		}
	}
	return float64(h.max.Load()) / 1000
}

type stepStats struct {
	hist       histogram
	deliveries atomic.Int64
	gaps, dups atomic.Int64
}

func runHub(c config) (*HubResult, error) {
	res := &HubResult{Transport: c.transport, Sessions: c.n, P99LimitMs: float64(c.hub.p99Limit) / 1e6, ChannelName: c.hub.channel}
	var rates []float64
	for _, f := range strings.Split(c.hub.rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("bad -rates %q", c.hub.rates)
		}
		rates = append(rates, r)
	}
	pub := c.hub.publishURL
	if pub == "" {
		u, _ := url.Parse(c.url)
		pub = u.Scheme + "://" + u.Host + "/api/publish"
	}
	if err := checkLoopback(pub); err != nil {
		return nil, err
	}
	st := &stats{}
	var conns []*client.Conn
	var raws []*rawConn
	if res.Raw = c.hub.raw && c.transport == "websocket"; res.Raw {
		raws = dialRaw(c, c.url, st)
	} else {
		opts := make([]client.Options, c.localAddrs)
		for i := range opts {
			opts[i] = clientOptions(c, i, &st.busy)
		}
		conns = dialClients(c, c.url, opts, st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
		for _, conn := range raws {
			if conn != nil {
				_ = conn.c.Close()
			}
		}
	}()
	steps := make([]*stepStats, len(rates))
	for i := range steps {
		steps[i] = &stepStats{}
	}
	var subscribed sync.WaitGroup
	var nsub atomic.Int64
	sub := `{"op":"subscribe","channel":` + strconv.Quote(c.hub.channel) + `}`
	start := func(run func()) {
		subscribed.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	for _, conn := range conns {
		if conn != nil {
			start(func() { subscriber(ctx, conn, sub, steps, &subscribed, &nsub, st) })
		}
	}
	for _, conn := range raws {
		if conn != nil {
			start(func() { rawSubscriber(ctx, conn, sub, steps, &subscribed, &nsub, st) })
		}
	}
	// Every subscriber acknowledged, or the opening phase's deadline.
	ready := make(chan struct{})
	go func() { subscribed.Wait(); close(ready) }()
	select {
	case <-ready:
	case <-time.After(c.connectMax):
		st.fail(errors.New("not every session subscribed within -connect-timeout"))
	}
	res.Subscribed = nsub.Load()
	if res.Subscribed == 0 {
		return res, fmt.Errorf("no session subscribed: %s", st.firstErr)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	if c.marks {
		fmt.Fprintln(os.Stderr, "measure start")
	}
	cpu0 := cpuSeconds()
	for i, rate := range rates {
		s := publishStep(ctx, hc, pub, c.hub.channel, i, rate, c.d)
		// Wait for the step's deliveries (bounded by -drain).
		want := s.Published * res.Subscribed
		deadline := time.Now().Add(c.hub.drain)
		for steps[i].deliveries.Load() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polling a counter, bounded by -drain
		}
		ss := steps[i]
		s.Deliveries = ss.deliveries.Load()
		s.DeliveriesPS = float64(s.Deliveries) / s.Seconds
		s.Lost = max(want-s.Deliveries, 0)
		s.Gaps, s.Dups = ss.gaps.Load(), ss.dups.Load()
		s.P50ms, s.P99ms = ss.hist.quantile(.50, s.Deliveries), ss.hist.quantile(.99, s.Deliveries)
		s.MaxMs = float64(ss.hist.max.Load()) / 1000
		res.Steps = append(res.Steps, s)
		if i == 0 {
			res.ClientCPU = cpuSeconds() - cpu0
		}
		if !c.quiet {
			fmt.Fprintf(os.Stderr, "hub %s x%d: %.0f publishes/s: %.0f deliveries/s, p50 %.1f ms, p99 %.1f ms, lost %d, dups %d\n",
				c.transport, res.Subscribed, float64(s.Published)/s.Seconds, s.DeliveriesPS, s.P50ms, s.P99ms, s.Lost, s.Dups)
		}
		if i == 0 && c.marks {
			// The first step (the table's one publish per 100 ms) is
			// what the driver samples the server over.
			fmt.Fprintln(os.Stderr, "measure end")
		}
		ok := s.P99ms <= res.P99LimitMs && s.Lost == 0 && s.Dups == 0 && s.PublishErrors == 0 &&
			float64(s.Published) >= 0.9*rate*s.Seconds
		if ok && s.DeliveriesPS > res.MaxDelivPS {
			res.MaxDelivPS, res.MaxDelivAt = s.DeliveriesPS, rate
		}
		if !ok {
			break
		}
	}
	res.Errors, res.FirstError = st.errors.Load(), st.firstErr
	return res, nil
}

// publishStep publishes {"s":step,"t":<unix ns>} at rate per second for d
// through the backend API, with at most 32 publishes in flight.
func publishStep(ctx context.Context, hc *http.Client, pub, channel string, step int, rate float64, d time.Duration) HubStep {
	s := HubStep{Rate: rate}
	var published, failed atomic.Int64
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	start := time.Now()
	end := time.NewTimer(d)
	defer end.Stop()
	prefix := `{"channel":` + strconv.Quote(channel) + `,"data":{"s":` + strconv.Itoa(step) + `,"t":`
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end.C:
			break loop
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			s.Skipped++
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body := prefix + strconv.FormatInt(time.Now().UnixNano(), 10) + `}}`
			res, err := hc.Post(pub, "application/json", strings.NewReader(body))
			if err != nil {
				failed.Add(1)
				return
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				failed.Add(1)
				return
			}
			published.Add(1)
		}()
	}
	wg.Wait()
	s.Seconds = time.Since(start).Seconds()
	s.Published, s.PublishErrors = published.Load(), failed.Load()
	return s
}

// subscriber subscribes conn and records every delivery in its step.
func subscriber(ctx context.Context, conn echoConn, sub string, steps []*stepStats, subscribed *sync.WaitGroup, n *atomic.Int64, st *stats) {
	acked := false
	defer func() {
		if !acked {
			subscribed.Done()
		}
	}()
	if err := conn.Send(sub); err != nil {
		st.fail(err)
		return
	}
	var last uint64
	for {
		m, err := conn.Recv(ctx)
		if err != nil {
			if ctx.Err() == nil {
				st.fail(fmt.Errorf("subscriber: %w", err))
			}
			return
		}
		now := time.Now()
		b := []byte(m)
		switch {
		case bytes.HasPrefix(b, []byte(`{"op":"message"`)):
			record(b, plainKeys, &last, steps, now, st)
		case bytes.HasPrefix(b, []byte(`{"op":"subscribed"`)):
			seq, _ := fieldUint(b, `"seq":`)
			last = max(last, seq)
			if !acked {
				acked = true
				n.Add(1)
				subscribed.Done()
			}
		case bytes.HasPrefix(b, []byte(`{"op":"error"`)):
			st.fail(fmt.Errorf("hub error: %.120s", m))
		}
	}
}

// fieldUint is the unsigned number after the first key in b.
func fieldUint(b []byte, key string) (uint64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	var v uint64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n > 0
}

// hubKeys are the fields a subscriber reads: as a hub message has them,
// or escaped inside a SockJS frame's string (raw subscribers).
type hubKeys struct{ seq, step, t string }

var (
	plainKeys = hubKeys{`"seq":`, `"s":`, `"t":`}
	rawKeys   = hubKeys{`\"seq\":`, `\"s\":`, `\"t\":`}
)

// record counts the delivery of message b (its fields under k) in its
// step: sequence (gaps, duplicates; last is the subscriber's highest
// seq) and publish-to-delivery delay.
func record(b []byte, k hubKeys, last *uint64, steps []*stepStats, now time.Time, st *stats) {
	seq, _ := fieldUint(b, k.seq)
	step, ok1 := fieldUint(b, k.step)
	t, ok2 := fieldUint(b, k.t)
	if !ok1 || !ok2 || step >= uint64(len(steps)) {
		st.fail(fmt.Errorf("unexpected message %.80s", b))
		return
	}
	ss := steps[step]
	switch {
	case seq <= *last:
		ss.dups.Add(1)
	case seq > *last+1:
		ss.gaps.Add(int64(seq - *last - 1))
	}
	*last = max(*last, seq)
	ss.deliveries.Add(1)
	ss.hist.add(now.Sub(time.Unix(0, int64(t))))
}
