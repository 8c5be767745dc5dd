package main

import (
	"expvar"
	"log"
	"net/http"
	"net/http/pprof"
	"runtime"
)

// serveDebug serves pprof and /debug/vars (memstats, goroutines) for
// `make bench-profile`, on its own address.
func serveDebug(addr string) {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.Handle("/debug/vars", expvar.Handler())
	expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
	log.Fatal(http.ListenAndServe(addr, m))
}
