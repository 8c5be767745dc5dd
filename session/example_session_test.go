package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// serve runs app as a SockJS service at /app on a test server and returns
// the server, for a client to dial srv.URL+"/app".
func serve(app func(*session.Session)) *httptest.Server {
	h := transport.New("/app", transport.Options{}, app)
	mux := http.NewServeMux()
	mux.Handle("/app/", h)
	return httptest.NewServer(transport.KeepPaths(mux, h))
}

// dial connects to the service over the given transport, within a bound.
func dial(srv *httptest.Server, query, transportName string) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return client.Dial(ctx, srv.URL+"/app"+query, client.Options{Transports: []string{transportName}})
}

// recv takes the client's next message, within a bound.
func recv(c *client.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Recv(ctx)
}

// The handler reads with Recv and writes with Send in a loop, one goroutine
// per session; the same code serves every transport. Recv returns ErrClosed
// once the session closed, and Send an error when the client fell so far
// behind that the session was closed with 3009: either way the handler
// returns, which would close the session had it not been.
func ExampleSession_Recv() {
	srv := serve(func(s *session.Session) {
		for {
			msg, err := s.Recv(s.Context())
			if err != nil {
				return // the session closed
			}
			if err := s.Send(strings.ToUpper(msg)); err != nil {
				return
			}
		}
	})
	defer srv.Close()

	for _, tr := range []string{client.WebSocket, client.XHRPolling} {
		c, err := dial(srv, "", tr)
		if err != nil {
			fmt.Println(err)
			return
		}
		_ = c.Send("hello over " + c.Transport())
		fmt.Println(recv(c))
		_ = c.Close()
	}
	// Output:
	// HELLO OVER WEBSOCKET <nil>
	// HELLO OVER XHR-POLLING <nil>
}

// With OnMessage no goroutine waits for the session's messages: each is
// handed to the function, in order, on the goroutine that read it, and the
// handler may return at once. The session stays open until the client
// leaves or Close is called. The function must not block for long: the
// client's connection is not read meanwhile.
func ExampleSession_OnMessage() {
	srv := serve(func(s *session.Session) {
		s.OnMessage(func(msg string) { _ = s.Send("echo: " + msg) })
	})
	defer srv.Close()

	c, err := dial(srv, "", client.WebSocket)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.Send("one")
	_ = c.Send("two")
	for range 2 {
		msg, err := recv(c)
		fmt.Println(msg, err)
	}
	// Output:
	// echo: one <nil>
	// echo: two <nil>
}

// Close delivers what was sent before it, then the close frame. Codes
// 4000-4999 are the application's own; the client sees the code and reason
// as sent.
func ExampleSession_Close() {
	srv := serve(func(s *session.Session) {
		_ = s.Send("bye")
		_ = s.Close(4001, "kicked")
	})
	defer srv.Close()

	c, err := dial(srv, "", client.XHRStreaming)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(recv(c))
	_, err = recv(c)
	fmt.Println(err)
	fmt.Println(c.CloseInfo())
	// Output:
	// bye <nil>
	// sockjs client: connection closed
	// 4001 kicked true
}

// Request tells the application about the request that opened the session,
// for authentication. Cookies are left out by default, because the iframe
// transports would turn cookie authentication into a cross-site request
// forgery hole: pass a token in the query string, as here, or in the first
// message.
func ExampleSession_Request() {
	srv := serve(func(s *session.Session) {
		if s.Request().Query.Get("token") != "secret" {
			_ = s.Close(4003, "forbidden")
			return
		}
		_ = s.Send("welcome")
	})
	defer srv.Close()

	for _, query := range []string{"?token=secret", "?token=guess"} {
		c, err := dial(srv, query, client.XHRPolling)
		if err != nil {
			fmt.Println(err)
			return
		}
		if msg, err := recv(c); err != nil {
			code, reason, _ := c.CloseInfo()
			fmt.Println(query, "closed:", code, reason)
		} else {
			fmt.Println(query, msg)
		}
		_ = c.Close()
	}
	// Output:
	// ?token=secret welcome
	// ?token=guess closed: 4003 forbidden
}

// SendMany queues several messages at once: here a backlog kept while the
// session was being set up, sent with one write on a websocket.
func ExampleSession_SendMany() {
	srv := serve(func(s *session.Session) {
		_ = s.SendMany([]string{"one", "two", "three"})
	})
	defer srv.Close()
	c, err := dial(srv, "", "websocket")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for range 3 {
		m, err := recv(c)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(m)
	}
	// Output:
	// one
	// two
	// three
}
