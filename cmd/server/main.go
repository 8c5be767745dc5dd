// Command server runs a SockJS server with embedded defaults: the protocol
// suite's echo services, the browser client and demo page, and health
// checks. `go run ./cmd/server` needs no set-up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/connlimit"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/web"
)

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sockjsd:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel()}))
	slog.SetDefault(log)
	// go-redis logs every failed dial of its pools itself; while Redis is
	// down that is several lines a second. Our own code says once that
	// Redis is gone and once that it is back (hub, cluster, /readyz), so
	// go-redis's lines go to debug.
	redis.SetLogger(redisLog{log})
	if err := run(cfg, log); err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}

// demoURL is the demo page's URL for a person on this machine, and what
// the listener listens on. A wildcard address (0.0.0.0, [::], from -addr
// :8081 or 0.0.0.0:8081) is not one a browser can open: the URL names
// loopback instead, which a wildcard listener also accepts (Go's [::]
// listener takes IPv4 as well).
func demoURL(a net.Addr) (url, on string) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String() + "/", a.Network()
	}
	port := strconv.Itoa(tcp.Port)
	switch {
	case tcp.IP == nil || tcp.IP.IsUnspecified() && tcp.IP.To4() == nil:
		return "http://127.0.0.1:" + port + "/", "every interface, IPv4 and IPv6 (open the demo from another machine with this one's name or address)"
	case tcp.IP.IsUnspecified():
		return "http://127.0.0.1:" + port + "/", "every IPv4 interface (open the demo from another machine with this one's name or address)"
	case tcp.IP.IsLoopback():
		return "http://" + net.JoinHostPort(tcp.IP.String(), port) + "/", "loopback only: this machine"
	default:
		return "http://" + net.JoinHostPort(tcp.IP.String(), port) + "/", "this address only"
	}
}

// run serves until SIGINT or SIGTERM, then drains (-drain-delay) and
// shuts down gracefully.
func run(cfg Config, log *slog.Logger) error {
	// Two signals fit: the first starts the drain, the second cuts it
	// short; later ones are dropped while the shutdown runs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	srv, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	demo, on := demoURL(ln.Addr())
	if srv.tls != nil {
		demo = "https" + strings.TrimPrefix(demo, "http")
		// Renewals are loaded until run returns: through the drain and
		// the shutdown too.
		wctx, stopWatch := context.WithCancel(context.Background())
		defer stopWatch()
		go srv.tls.watch(wctx, cfg.TLS.ReloadInterval)
	} else {
		stopHangup := ignoreHangup(log)
		defer stopHangup()
	}
	log.Info("sockjs server listening", "addr", ln.Addr().String(), "on", on, "demo", demo, "tls", srv.tls != nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.serve(ln) }()

	select {
	case err := <-errc:
		return err
	case <-sigs:
	}
	dctx, cancelDrain := untilSignal(sigs)
	srv.drain(dctx, cfg.Drain.Delay)
	cancelDrain()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	err = srv.shutdown(sctx)
	log.Info("shut down", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// ignoreHangup logs each SIGHUP until stop is called. SIGHUP's default
// action ends the process, and operators (and certbot hooks) send it to
// mean "reload": with -tls-cert it reloads the certificate; without, there
// is nothing to reload and the server goes on.
func ignoreHangup(log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: nothing to reload without -tls-cert; serving on")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// serve serves ln until the server is closed. Each connection passes the
// caps, then the PROXY protocol, then TLS: the caps count TCP connections
// as accepted, before a PROXY header is read (refusing costs nothing
// then; connections from trusted proxies count against -max-connections
// only), and the handshake needs the PROXY header out of the way. The
// handshake is bounded by -read-header-timeout (net/http bounds it by
// the smallest of its timeouts). ServeTLS sees the *tls.Conn itself, so
// HTTP/2 is negotiated by ALPN.
func (s *server) serve(ln net.Listener) error {
	s.conns.Listener = ln
	l := s.listener(s.conns)
	if s.tls != nil {
		return s.http.ServeTLS(l, "", "")
	}
	return s.http.Serve(l)
}

type server struct {
	http     *http.Server
	services []*transport.Handler
	hub      *hubMount
	log      *slog.Logger
	stopping atomic.Bool
	exec     *execMount          // programs run per session, reaped at shutdown
	proxy    *proxyMount         // the gateway: its close requests and webhooks outlive the sessions
	checks   []readyCheck        // dependencies /readyz waits for (Redis in cluster mode)
	conns    *connlimit.Listener // the connection caps, around run's listener
	// listener wraps the capped listener: the PROXY protocol from
	// -trusted-proxies (realaddr.go).
	listener func(net.Listener) net.Listener
	tls      *certReloader // -tls-cert: the certificate served (tls.go); nil: plain HTTP
	// front is the router with the SockJS services answered ahead of it
	// (serviceroutes.go).
	front http.Handler
	// handOffTimeout bounds the hand-off of sessions at shutdown
	// (handoff.go); 0: none.
	handOffTimeout time.Duration
}

func newServer(cfg Config, log *slog.Logger) (*server, error) {
	opts := cfg.transportOptions()
	opts.Logger = log
	// The browser side: each service serves the same sockjs-client to its
	// iframe page, or the page loads the integrity-pinned CDN copy.
	site := web.New(cfg.ClientDir, log)
	opts.ClientScript = site.Client()
	r := mux.NewRouter()
	// The protocol's URLs include ones like /echo// that must answer 404,
	// not a redirect to a cleaned path.
	r.SkipClean(true)

	// Each feature wires itself in its own file (metrics.go, hub.go):
	// the observer must be in opts before any service is built.
	m, reg := mountMetrics(r, &opts)
	// The certificate files first: a bad one stops the start before
	// anything else is set up.
	certs, err := cfg.TLS.loadCerts(reg, log)
	if err != nil {
		return nil, err
	}
	checks, err := setupCluster(cfg, &opts, reg, log)
	if err != nil {
		return nil, err
	}
	svcs := services.Protocol(opts)
	// Only /demo gets the in-band service ping (-ping-interval): its page
	// runs sockjsd.js, which answers it and hides it. The hub is spoken by
	// clients that know its JSON protocol alone (docs/hub.md: Python,
	// mobile, plain sockjs-client pages), so it measures round trips with
	// its own {"op":"ping"} (-hub-ping-interval) and websocket pings, and
	// never sends a message that is not JSON.
	svcs = append(svcs, services.Demo(opts, cfg.PingInterval))
	hm, err := mountHub(r, cfg, opts, m, reg, log)
	if err != nil {
		return nil, err
	}
	svcs = append(svcs, hm.Handlers...)
	// /readyz waits for the hub's broker too (Redis in cluster mode).
	checks = append(checks, hm.Ready)
	ex, err := mountExec(r, cfg, opts, m, log)
	if err != nil {
		return nil, err
	}
	svcs = append(svcs, ex.handlers...)
	px, err := mountProxy(r, cfg, opts, hm, reg, log)
	if err != nil {
		return nil, err
	}
	svcs = append(svcs, px.handlers...)
	services.Mount(r, svcs...)

	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s := &server{services: svcs, log: log, hub: hm, exec: ex, proxy: px, checks: checks, conns: connLimiter(cfg.Conns, cfg.trustedProxies(), reg)}
	if cfg.RedisURL != "" && cfg.HandOff.Enabled {
		s.handOffTimeout = cfg.HandOff.Timeout
	}
	r.HandleFunc("/readyz", s.ready)
	// The browser side (sockjs-client, demo page) answers every other path.
	r.PathPrefix("/").Handler(site)

	s.front = serviceRoutesFor(r, svcs)
	trusted := cfg.trustedProxies()
	s.listener = func(ln net.Listener) net.Listener { return trusted.listener(ln, cfg.Limits.ReadHeaderTimeout) }
	s.http = &http.Server{
		// The client's address from a trusted proxy's headers, before
		// anything reads it (realaddr.go); an answer given without
		// reading the body closes its connection (unreadbody.go), and so
		// does every answer while draining (drain.go). The SockJS
		// services are reached ahead of the router (serviceroutes.go).
		Handler:           s.closeWhileDraining(closeOnUnreadBody(trusted.handler(s.front))),
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	cfg.TLS.apply(s.http, certs, reg, log)
	s.tls = certs
	return s, nil
}

// ready answers 503 once the drain has begun (drain.go), so load
// balancers stop sending new sessions here, and while a dependency is
// down. /readyz?local leaves the dependencies out: it is the balancer's
// check (deploy/haproxy.cfg). Every node shares one Redis, so taking all
// of them out while it is down helps nobody, but a draining node must be
// taken out before its shutdown, or the balancer keeps sending it
// requests until its listener closes under them.
func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	if r.URL.Query().Has("local") {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	for _, check := range s.checks {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		err := check(ctx)
		cancel()
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *server) draining() bool { return s.stopping.Load() }

// shutdown stops accepting connections, sends every session
// c[1001,"Going away"], waits for those frames to be written, and closes
// what is left when ctx ends.
func (s *server) shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	// The HTTP sessions that can move go to the other nodes first
	// (handoff.go); the rest end with 1001 below.
	s.handOff(ctx)
	var wg sync.WaitGroup
	errs := make([]error, len(s.services)+2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[0] = s.http.Shutdown(ctx)
	}()
	for i, h := range s.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = h.Shutdown(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[len(errs)-1] = s.exec.shutdown(ctx)
	}()
	wg.Wait()
	// The proxied sessions are closed by now; their close requests,
	// directory records and webhooks finish within what is left of ctx.
	errs[0] = errors.Join(errs[0], s.proxy.shutdown(ctx), s.hub.Close())
	err := errors.Join(errs...)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}

// redisLog hands go-redis's internal log lines to slog at debug level.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
