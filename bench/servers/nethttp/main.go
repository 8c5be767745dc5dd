// Command nethttp is the HTTP ceiling of `make bench`: plain net/http
// handlers answering the same requests an xhr-polling echo costs (a send
// and a poll) and an xhr-streaming echo costs (a send, and a frame written
// and flushed on a long response that ends after 128 KiB like ours), with
// a map of mailboxes and nothing else: no session state machine, timers,
// limits, CORS, metrics or JSON validation.
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
)

// responseLimit is where a streaming response ends, as in cmd/server.
const responseLimit = 128 << 10

// prelude is what xhr-streaming sends first: 2048 'h' and a newline.
var prelude = append(bytes.Repeat([]byte{'h'}, 2048), '\n')

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
		sid, endpoint := parts[3], parts[4]
		receiving := endpoint == "xhr" || endpoint == "xhr_streaming"
		mu.Lock()
		box, ok := boxes[sid]
		if !ok && receiving {
			box = make(chan []byte, 16)
			boxes[sid] = box
		}
		mu.Unlock()
		switch {
		case endpoint == "xhr" && !ok:
			_, _ = w.Write([]byte("o\n"))
		case endpoint == "xhr":
			var m []byte
			select {
			case m = <-box:
			case <-r.Context().Done():
				return
			}
			// m is the client's JSON array: the frame is "a" + it.
			_, _ = w.Write(append(append([]byte{'a'}, m...), '\n'))
		case endpoint == "xhr_streaming":
			stream(w, r, box, !ok)
		case endpoint == "xhr_send" && ok:
			b, _ := io.ReadAll(r.Body)
			select {
			case box <- b:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}

// stream writes the prelude, the open frame on a new session, then one
// flushed frame per message until the response limit.
func stream(w http.ResponseWriter, r *http.Request, box chan []byte, open bool) {
	w.Header().Set("Content-Type", "application/javascript; charset=UTF-8")
	f := w.(http.Flusher)
	_, _ = w.Write(prelude)
	if open {
		_, _ = w.Write([]byte("o\n"))
	}
	f.Flush()
	buf := make([]byte, 0, 512)
	for written := 0; written < responseLimit; {
		select {
		case m := <-box:
			buf = append(append(append(buf[:0], 'a'), m...), '\n')
			if _, err := w.Write(buf); err != nil {
				return
			}
			f.Flush()
			written += len(buf)
		case <-r.Context().Done():
			return
		}
	}
}
