package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
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

// soakConfig is the soak mode's part of the flags.
type soakConfig struct {
	transports     string
	metricsURL     string
	settle         time.Duration
	maxMsgs        int
	recvTimeout    time.Duration
	goroutineSlack int
	heapSlack      int64
}

func (s *soakConfig) register() {
	flag.StringVar(&s.transports, "soak-transports", "websocket,xhr-streaming,xhr-polling", "soak mode: transports, -n sessions at a time on each")
	flag.StringVar(&s.metricsURL, "metrics-url", "", "soak mode: the server's Prometheus /metrics (default: /metrics on -url's host)")
	flag.DurationVar(&s.settle, "settle", 3*time.Minute, "soak mode: longest wait, after the last session, for goroutines, heap and sessions to return to their baseline (the heap needs a GC; Go forces one every 2 minutes)")
	flag.IntVar(&s.maxMsgs, "soak-messages", 40, "soak mode: most messages one session echoes (each session picks 1..this)")
	flag.DurationVar(&s.recvTimeout, "soak-recv-timeout", 10*time.Second, "soak mode: an echo not back within this is lost")
	flag.IntVar(&s.goroutineSlack, "goroutine-slack", 0, "soak mode: goroutines over the baseline still counted as back to it")
	flag.Int64Var(&s.heapSlack, "heap-slack", 4<<20, "soak mode: heap in use (bytes) over the baseline still counted as back to it")
}

// serverStats are the figures the soak reads from /metrics.
type serverStats struct {
	Goroutines float64 `json:"goroutines"`
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	RSS        float64 `json:"rss_bytes"`
	Sessions   float64 `json:"sessions_open"`
	GCs        float64 `json:"gc_cycles"`
}

// SoakTransport counts one transport's sessions.
type SoakTransport struct {
	Sessions     int64  `json:"sessions"`
	DialFailures int64  `json:"dial_failures"`
	Closed       int64  `json:"closed"`    // closed by the client (close frame or, over HTTP, requests ended)
	Abandoned    int64  `json:"abandoned"` // connection dropped with no close (websocket: the TCP connection closed under it)
	Messages     int64  `json:"messages"`  // echoes received in order
	Lost         int64  `json:"lost"`      // echoes never received (timeout or gap)
	Dups         int64  `json:"dups"`      // echoes received twice or out of order
	ServerClosed int64  `json:"server_closed"`
	FirstError   string `json:"first_error,omitempty"`
}

// SoakResult is the soak mode's output.
type SoakResult struct {
	Seconds       float64                   `json:"seconds"`
	Workers       int                       `json:"sessions_at_a_time_per_transport"`
	Transports    map[string]*SoakTransport `json:"transports"`
	Baseline      serverStats               `json:"baseline"`
	Peak          serverStats               `json:"peak"`
	Final         serverStats               `json:"final"`
	SettleSeconds float64                   `json:"settle_seconds"`
	BackToBase    bool                      `json:"back_to_baseline"`
	Pass          bool                      `json:"pass"`
	Problems      []string                  `json:"problems,omitempty"`
}

type soakCounters struct {
	sessions, dialFailures, closed, abandoned, messages, lost, dups, serverClosed atomic.Int64
	mu                                                                            sync.Mutex
	firstErr                                                                      string
}

func (s *soakCounters) note(err error) {
	s.mu.Lock()
	if s.firstErr == "" {
		s.firstErr = err.Error()
	}
	s.mu.Unlock()
}

// scrape reads the soak's figures from a Prometheus text exposition.
func scrape(hc *http.Client, u string) (serverStats, error) {
	var st serverStats
	res, err := hc.Get(u)
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s", u, res.Status)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		base, _, _ := strings.Cut(name, "{")
		switch base {
		case "go_goroutines":
			st.Goroutines = v
		case "go_memstats_heap_inuse_bytes":
			st.HeapInuse = v
		case "process_resident_memory_bytes":
			st.RSS = v
		case "sockjs_sessions_open":
			st.Sessions += v
		case "go_gc_duration_seconds_count":
			st.GCs = v
		}
	}
	return st, sc.Err()
}

func runSoak(c config) (*SoakResult, error) {
	mu := c.soak.metricsURL
	if mu == "" {
		u, _ := url.Parse(c.url)
		mu = u.Scheme + "://" + u.Host + "/metrics"
	}
	if err := checkLoopback(mu); err != nil {
		return nil, err
	}
	// No keep-alive: the scrape's own connection is gone between scrapes,
	// so it never counts against the server's goroutines.
	mhc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	base, err := scrape(mhc, mu)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	res := &SoakResult{Workers: c.n, Transports: map[string]*SoakTransport{}, Baseline: base, Peak: base}
	ctx, cancel := context.WithTimeout(context.Background(), c.d)
	defer cancel()
	var wg sync.WaitGroup
	counters := map[string]*soakCounters{}
	var allOpts []client.Options
	var busy atomic.Int64
	for _, tr := range strings.Split(c.soak.transports, ",") {
		tr = strings.TrimSpace(tr)
		cc := c
		cc.transport = tr
		cs := &soakCounters{}
		counters[tr] = cs
		opts := make([]client.Options, c.localAddrs)
		for i := range opts {
			opts[i] = clientOptions(cc, i, &busy)
			opts[i].ConnectTimeout = 10 * time.Second
		}
		allOpts = append(allOpts, opts...)
		for w := 0; w < c.n; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				soakWorker(ctx, c, opts[w%len(opts)], cs)
			}()
		}
	}
	start := time.Now()
	// Sample the server every 5 s for the peak, with a progress line.
	sampleDone := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-sampleDone:
				return
			case <-t.C:
			}
			s, err := scrape(mhc, mu)
			if err != nil {
				continue
			}
			res.Peak = serverStats{max(res.Peak.Goroutines, s.Goroutines), max(res.Peak.HeapInuse, s.HeapInuse),
				max(res.Peak.RSS, s.RSS), max(res.Peak.Sessions, s.Sessions), s.GCs}
			if !c.quiet {
				var n, m int64
				for _, cs := range counters {
					n += cs.sessions.Load()
					m += cs.messages.Load()
				}
				fmt.Fprintf(os.Stderr, "soak %4.0fs: %d sessions, %d echoes; server: %0.f open, %0.f goroutines, heap %.1f MB, RSS %.1f MB\n",
					time.Since(start).Seconds(), n, m, s.Sessions, s.Goroutines, s.HeapInuse/1e6, s.RSS/1e6)
			}
		}
	}()
	wg.Wait()
	close(sampleDone)
	sampler.Wait()
	res.Seconds = time.Since(start).Seconds()
	closeIdle(allOpts)

	// Back to the baseline: no session open, goroutines and heap back, and
	// a GC since the last session ended (heap figures are from the last GC).
	settleStart := time.Now()
	gcAtZero := -1.0
	for {
		s, err := scrape(mhc, mu)
		if err == nil {
			res.Final = s
			if s.Sessions <= base.Sessions && gcAtZero < 0 {
				gcAtZero = s.GCs
			}
			if s.Sessions <= base.Sessions && s.GCs > gcAtZero &&
				s.Goroutines <= base.Goroutines+float64(c.soak.goroutineSlack) &&
				s.HeapInuse <= base.HeapInuse+float64(c.soak.heapSlack) {
				res.BackToBase = true
				break
			}
		}
		if time.Since(settleStart) > c.soak.settle {
			break
		}
		time.Sleep(time.Second) // polling the server's metrics, bounded by -settle
	}
	res.SettleSeconds = time.Since(settleStart).Seconds()

	res.Pass = res.BackToBase
	if !res.BackToBase {
		res.Problems = append(res.Problems, fmt.Sprintf("not back to baseline within %v: goroutines %.0f (base %.0f), heap %.1f MB (base %.1f), sessions %.0f (base %.0f)",
			c.soak.settle, res.Final.Goroutines, base.Goroutines, res.Final.HeapInuse/1e6, base.HeapInuse/1e6, res.Final.Sessions, base.Sessions))
	}
	for tr, cs := range counters {
		t := &SoakTransport{Sessions: cs.sessions.Load(), DialFailures: cs.dialFailures.Load(), Closed: cs.closed.Load(),
			Abandoned: cs.abandoned.Load(), Messages: cs.messages.Load(), Lost: cs.lost.Load(), Dups: cs.dups.Load(),
			ServerClosed: cs.serverClosed.Load(), FirstError: cs.firstErr}
		res.Transports[tr] = t
		if t.Lost+t.Dups+t.ServerClosed+t.DialFailures > 0 || t.Sessions == 0 {
			res.Pass = false
			res.Problems = append(res.Problems, fmt.Sprintf("%s: %d lost, %d duplicated, %d closed by the server, %d failed to open of %d sessions (%s)",
				tr, t.Lost, t.Dups, t.ServerClosed, t.DialFailures, t.Sessions, t.FirstError))
		}
	}
	if !res.Pass {
		return res, errors.New("soak failed: " + strings.Join(res.Problems, "; "))
	}
	return res, nil
}

// soakWorker opens sessions one after another until ctx ends. Each echoes
// 1..maxMsgs sequence-numbered messages with 1..4 in flight, checking
// that every echo is the next one expected, then closes or abandons the
// session; a quarter are abandoned half-way with messages in flight.
func soakWorker(ctx context.Context, c config, base client.Options, cs *soakCounters) {
	for ctx.Err() == nil {
		var raw atomic.Pointer[net.Conn]
		opts := base
		dial := base.NetDialContext
		opts.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dial(ctx, network, addr)
			if err == nil {
				raw.Store(&nc)
			}
			return nc, err
		}
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		conn, err := client.Dial(dctx, c.url, opts)
		dcancel()
		if err != nil {
			if ctx.Err() == nil {
				cs.dialFailures.Add(1)
				cs.note(fmt.Errorf("dial: %w", err))
			}
			return
		}
		cs.sessions.Add(1)
		soakSession(ctx, c, conn, cs)
		if rand.IntN(2) == 0 {
			cs.closed.Add(1)
		} else {
			// Abandon: the websocket's TCP connection closes under it
			// with no close frame; HTTP requests simply end.
			cs.abandoned.Add(1)
			if nc := raw.Load(); nc != nil {
				_ = (*nc).Close()
			}
		}
		_ = conn.Close()
	}
}

func soakSession(ctx context.Context, c config, conn *client.Conn, cs *soakCounters) {
	total := 1 + rand.IntN(c.soak.maxMsgs)
	inFlight := 1 + rand.IntN(4)
	stopAt := total
	if rand.IntN(4) == 0 {
		stopAt = total / 2 // abandoned with messages in flight: those are not counted
	}
	pad := strings.Repeat("x", rand.IntN(200))
	id := rand.Uint64()
	msg := func(seq int) string { return fmt.Sprintf("%x.%d.é☃\"%s", id, seq, pad) }
	sent, got := 0, 0
	for ; sent < min(inFlight, total); sent++ {
		if conn.Send(msg(sent)) != nil {
			break
		}
	}
	for got < stopAt && got < sent {
		rctx, cancel := context.WithTimeout(ctx, c.soak.recvTimeout)
		m, err := conn.Recv(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return // the soak ended: messages in flight are not lost
		case errors.Is(err, client.ErrClosed):
			code, reason, _ := conn.CloseInfo()
			cs.serverClosed.Add(1)
			cs.lost.Add(int64(sent - got))
			cs.note(fmt.Errorf("closed by the server with %d %q after %d of %d echoes", code, reason, got, sent))
			return
		case err != nil:
			cs.lost.Add(int64(sent - got))
			cs.note(fmt.Errorf("echo %d of %d not back within %v", got, sent, c.soak.recvTimeout))
			return
		}
		if m != msg(got) {
			// Which one came instead: an earlier one is a duplicate, a
			// later one means those between were lost.
			var seq int
			if f := strings.Split(m, "."); len(f) > 1 {
				seq, _ = strconv.Atoi(f[1])
			}
			if seq < got {
				cs.dups.Add(1)
				cs.note(fmt.Errorf("echo %d again after %d", seq, got))
				continue
			}
			cs.lost.Add(int64(seq - got))
			cs.note(fmt.Errorf("echo %d when %d was due", seq, got))
			got = seq
		}
		got++
		cs.messages.Add(1)
		if sent < total {
			if conn.Send(msg(sent)) == nil {
				sent++
			}
		}
	}
}
