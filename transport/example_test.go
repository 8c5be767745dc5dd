package transport_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// Mount an echo service under /echo and talk to it with plain HTTP, as an
// xhr-polling client does.
func Example() {
	r := mux.NewRouter()
	r.SkipClean(true) // the protocol's URLs include ones like /echo// that must answer 404
	h := transport.New("/echo", transport.Options{}, func(s *session.Session) {
		for {
			msg, err := s.Recv(s.Context())
			if err != nil {
				return // the session closed
			}
			_ = s.Send(strings.ToUpper(msg))
		}
	})
	h.Mount(r)
	srv := httptest.NewServer(r)
	defer srv.Close()

	post := func(path, body string) string {
		res, err := http.Post(srv.URL+"/echo/000/example"+path, "text/plain", strings.NewReader(body))
		if err != nil {
			return err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %q", res.StatusCode, b)
	}
	fmt.Println(post("/xhr", ""))                     // opens the session
	fmt.Println(post("/xhr_send", `["hello","you"]`)) // two messages
	fmt.Println(post("/xhr", ""))                     // both answers in one frame
	// Output:
	// 200 "o\n"
	// 204 ""
	// 200 "a[\"HELLO\",\"YOU\"]\n"
}

// An echo with Session.OnMessage: no goroutine waits for the session's
// messages; each is answered on the goroutine that received it (here the
// xhr_send request's), so the answer is queued before xhr_send returns.
func Example_onMessage() {
	r := mux.NewRouter()
	r.SkipClean(true)
	transport.New("/echo", transport.Options{}, func(s *session.Session) {
		s.OnMessage(func(msg string) { _ = s.Send(strings.ToUpper(msg)) })
		// Returning leaves the session open: it ends when the client
		// leaves or Close is called.
	}).Mount(r)
	srv := httptest.NewServer(r)
	defer srv.Close()

	post := func(path, body string) string {
		res, err := http.Post(srv.URL+"/echo/000/onmessage"+path, "text/plain", strings.NewReader(body))
		if err != nil {
			return err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %q", res.StatusCode, b)
	}
	fmt.Println(post("/xhr", ""))
	fmt.Println(post("/xhr_send", `["hello","you"]`))
	fmt.Println(post("/xhr", ""))
	// Output:
	// 200 "o\n"
	// 204 ""
	// 200 "a[\"HELLO\",\"YOU\"]\n"
}
