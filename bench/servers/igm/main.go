// Command igm serves an echo at /echo with igm/sockjs-go v3.0.2, the Go
// SockJS server people use today: the comparison point of `make bench`.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/igm/sockjs-go/v3/sockjs"
)

func main() {
	debug := flag.String("debug-addr", "", "serve pprof and /debug/vars here (bench/profile.sh); empty: off")
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	flag.Parse()
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
