// Command nethttp is the polling ceiling of `make bench`: a plain net/http
// handler answering the same two requests an xhr-polling echo costs (a
// send and a poll), with a map of mailboxes and nothing else: no session
// state machine, timers, limits or JSON decoding.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8084", "listen address")
	flag.Parse()
	var mu sync.Mutex
	boxes := map[string]chan []byte{}
	http.HandleFunc("/echo/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = w.Write([]byte(`{"websocket":false,"cookie_needed":false,"origins":["*:*"],"entropy":1}`))
	})
	http.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/") // "", echo, server, session, endpoint
		if len(parts) != 5 {
			http.NotFound(w, r)
			return
		}
		sid := parts[3]
		mu.Lock()
		box, ok := boxes[sid]
		if !ok && parts[4] == "xhr" {
			box = make(chan []byte, 1024)
			boxes[sid] = box
		}
		mu.Unlock()
		switch {
		case parts[4] == "xhr" && !ok:
			_, _ = w.Write([]byte("o\n"))
		case parts[4] == "xhr":
			var m []byte
			select {
			case m = <-box:
			case <-r.Context().Done():
				return
			}
			// m is the client's JSON array: the frame is "a" + it.
			_, _ = w.Write(append(append([]byte{'a'}, m...), '\n'))
		case parts[4] == "xhr_send" && ok:
			b, _ := io.ReadAll(r.Body)
			box <- b
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
