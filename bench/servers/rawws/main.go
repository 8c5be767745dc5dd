// Command rawws is the websocket ceiling of `make bench`: a plain
// gorilla/websocket echo with no session layer. It speaks just enough of
// SockJS (/info, the "o" frame, "a" + the client's array) for the same
// client to drive it, and does no JSON work at all.
package main

import (
	"flag"
	"log"
	"net/http"
	"runtime"
	"strings"

	"github.com/gorilla/websocket"
)

func main() {
	debug := flag.String("debug-addr", "", "serve pprof and /debug/vars here (make bench-profile); empty: off")
	addr := flag.String("addr", "127.0.0.1:8083", "listen address")
	rate := flag.Int("mem-profile-rate", 0, "runtime.MemProfileRate (1: every allocation, exact heap profiles by site); 0: Go's default")
	flag.Parse()
	if *rate > 0 {
		runtime.MemProfileRate = *rate
	}
	if *debug != "" {
		go serveDebug(*debug)
	}
	up := websocket.Upgrader{}
	http.HandleFunc("/echo/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = w.Write([]byte(`{"websocket":true,"cookie_needed":false,"origins":["*:*"],"entropy":1}`))
	})
	http.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/websocket") {
			http.NotFound(w, r)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if c.WriteMessage(websocket.TextMessage, []byte("o")) != nil {
			return
		}
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			if c.WriteMessage(websocket.TextMessage, append([]byte{'a'}, m...)) != nil {
				return
			}
		}
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
