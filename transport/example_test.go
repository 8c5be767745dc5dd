package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	sockjsclient "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
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
	gorillamux.Mount(r, h)
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
	gorillamux.Mount(r, transport.New("/echo", transport.Options{}, func(s *session.Session) {
		s.OnMessage(func(msg string) { _ = s.Send(strings.ToUpper(msg)) })
	}))

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

// On net/http's ServeMux: register the service under its prefix and wrap
// the mux in KeepPaths, which hands every path under the prefix to the
// service as sent. ServeMux alone would redirect "/echo//" to "/echo/",
// where the protocol wants 404.
func ExampleKeepPaths() {
	echo := transport.New("/echo", transport.Options{}, func(s *session.Session) {
		s.OnMessage(func(msg string) { _ = s.Send(msg) })
	})
	mux := http.NewServeMux()
	mux.Handle("/echo/", echo)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "site\n") })
	srv := httptest.NewServer(transport.KeepPaths(mux, echo))
	defer srv.Close()

	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/echo", "/echo//", "/other"} {
		res, err := hc.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Printf("%s %d %q\n", path, res.StatusCode, b)
	}
	// Output:
	// /echo 200 "Welcome to SockJS!\n"
	// /echo// 404 "404 Error: Page not found\n"
	// /other 200 "site\n"
}

// Shutdown closes every session with 1001 "Going away" and waits, within
// its context, until the close frames were written to connected clients.
// Run it alongside http.Server.Shutdown: that one does not close websocket
// and streaming connections.
func ExampleHandler_Shutdown() {
	h := transport.New("/echo", transport.Options{}, func(s *session.Session) {
		s.OnMessage(func(msg string) { _ = s.Send(msg) })
	})
	mux := http.NewServeMux()
	mux.Handle("/echo/", h)
	srv := httptest.NewServer(transport.KeepPaths(mux, h))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := sockjsclient.Dial(ctx, srv.URL+"/echo", sockjsclient.Options{Transports: []string{sockjsclient.XHRStreaming}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("shutdown:", h.Shutdown(ctx))
	<-c.Done()
	fmt.Println(c.CloseInfo())
	// Output:
	// shutdown: <nil>
	// 1001 Going away true
}

// Bound the websocket messages of two services together: one budget of
// message bytes being read (send bodies have their own, BodyBudget), and
// a payload deadline, here short. A client that starts a message and
// stops is closed with 1008.
func ExampleNewBodyBudget() {
	messages := transport.NewBodyBudget(16 << 20)
	opts := transport.Options{MessageBudget: messages, MessageReadTimeout: 200 * time.Millisecond}
	mux := http.NewServeMux()
	for _, name := range []string{"/a", "/b"} {
		h := transport.New(name, opts, func(s *session.Session) { <-s.Context().Done() })
		mux.Handle(name+"/", h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/a/websocket", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	w, _ := c.NextWriter(websocket.TextMessage)
	_, _ = w.Write(make([]byte, 8<<10)) // more than a frame's worth: sent, unfinished
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		fmt.Println(ce.Code, ce.Text)
	}
	// Output: 1008 Message not received in time
}
