// Command echo is the smallest SockJS server: an echo service on
// net/http's ServeMux. The README shows it verbatim.
package main

import (
	"log"
	"net/http"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

func main() {
	echo := transport.New("/echo", transport.Options{}, func(s *session.Session) {
		for {
			msg, err := s.Recv(s.Context())
			if err != nil {
				return // the session closed
			}
			if err := s.Send(msg); err != nil {
				return // the client fell too far behind: closed with 3009
			}
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/echo/", echo)
	log.Println("SockJS echo at http://127.0.0.1:8090/echo")
	// KeepPaths hands /echo/... to the service as sent: ServeMux would
	// redirect /echo// where the protocol wants a 404.
	log.Fatal(http.ListenAndServe("127.0.0.1:8090", transport.KeepPaths(mux, echo)))
}
