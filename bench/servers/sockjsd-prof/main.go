// Command sockjsd-prof is cmd/server's /echo and /hub for profiling: the
// same library path (transport.New with the default options, the metrics
// observer, gorilla/mux; the hub with a memory broker and its backend API
// at /api, without a key: loopback only) plus net/http/pprof and expvar's
// memstats on a separate -debug-addr. cmd/server has no debug endpoints on purpose; this
// binary exists for make bench-profile only.
package main

import (
	"expvar"
	"flag"
	"log"
	"net/http"
	"net/http/pprof"
	"runtime"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "listen address")
	debug := flag.String("debug-addr", "127.0.0.1:6060", "pprof and /debug/vars listen address")
	rate := flag.Int("mem-profile-rate", 0, "runtime.MemProfileRate (1: every allocation, exact heap profiles by site); 0: Go's default")
	flag.Parse()
	if *rate > 0 {
		runtime.MemProfileRate = *rate
	}
	go serveDebug(*debug)
	var opts transport.Options
	opts.Session.Observer = metrics.New(prometheus.NewRegistry())
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(opts)...)
	// The load generator's subscribers come from a few addresses.
	h := hub.New(hub.Options{MaxSubscriptionsPerAddress: 1 << 20})
	hub.NewAPI(h, hub.APIOptions{}).Mount(r, "/api")
	gorillamux.Mount(r, transport.New("/hub", opts, h.Serve))
	log.Fatal(http.ListenAndServe(*addr, r))
}

// serveDebug serves pprof and /debug/vars (memstats, goroutines).
func serveDebug(addr string) {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.Handle("/debug/vars", expvar.Handler())
	expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
	log.Fatal(http.ListenAndServe(addr, m))
}
