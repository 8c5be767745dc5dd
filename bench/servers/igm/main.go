// Command igm serves an echo at /echo with igm/sockjs-go v3.0.2, the Go
// SockJS server people use today: the comparison point of `make bench`.
package main

import (
	"flag"
	"log"
	"net/http"
	"runtime"

	"github.com/igm/sockjs-go/v3/sockjs"
)

func main() {
	debug := flag.String("debug-addr", "", "serve pprof and /debug/vars here (make bench-profile); empty: off")
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	rate := flag.Int("mem-profile-rate", 0, "runtime.MemProfileRate (1: every allocation, exact heap profiles by site); 0: Go's default")
	flag.Parse()
	if *rate > 0 {
		runtime.MemProfileRate = *rate
	}
	if *debug != "" {
		go serveDebug(*debug)
	}
	h := sockjs.NewHandler("/echo", sockjs.DefaultOptions, func(s sockjs.Session) {
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if s.Send(m) != nil {
				return
			}
		}
	})
	log.Fatal(http.ListenAndServe(*addr, h))
}
