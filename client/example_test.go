package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

// exampleServer serves the protocol suite's services (/echo, /close,
// /disabled_websocket_echo, /cookie_needed_echo) on a test server.
func exampleServer() *httptest.Server {
	hs := services.Protocol(transport.Options{})
	mux := http.NewServeMux()
	for _, h := range hs {
		mux.Handle(h.Prefix()+"/", h)
	}
	return httptest.NewServer(transport.KeepPaths(mux, hs...))
}

// Dial tries websocket, then xhr-streaming, then xhr-polling; the Conn
// offers the same Send and Recv whatever it got. Here the service has
// websocket off, and says so in /info, so Dial goes straight to
// xhr-streaming.
func ExampleDial() {
	srv := exampleServer()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, service := range []string{"/echo", "/disabled_websocket_echo"} {
		c, err := client.Dial(ctx, srv.URL+service, client.Options{})
		if err != nil {
			fmt.Println(err) // wraps client.ErrNoTransport, with each transport's reason
			return
		}
		_ = c.Send("hello")
		msg, err := c.Recv(ctx)
		fmt.Println(service, c.Transport(), msg, err)
		_ = c.Close()
	}
	// Output:
	// /echo websocket hello <nil>
	// /disabled_websocket_echo xhr-streaming hello <nil>
}

// Options.Transports picks the transports to try, in order: to test a
// service over polling, say, as a browser behind a buffering proxy would
// reach it.
func ExampleDial_transports() {
	srv := exampleServer()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/echo", client.Options{
		Transports:     []string{client.XHRPolling},
		ConnectTimeout: 5 * time.Second, // for each transport tried
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.Send("a")
	_ = c.Send("b")
	for range 2 {
		fmt.Println(c.Recv(ctx))
	}
	fmt.Println(c.Transport())
	// Output:
	// a <nil>
	// b <nil>
	// xhr-polling
}

// After the server closed the session, Recv returns the messages received
// before the close, then ErrClosed; CloseInfo has the server's code and
// reason.
func ExampleConn_CloseInfo() {
	srv := exampleServer()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/close", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, err = c.Recv(ctx)
	fmt.Println(errors.Is(err, client.ErrClosed))
	fmt.Println(c.CloseInfo())
	// Output:
	// true
	// 3000 Go away! true
}

// GetInfo reads a service's /info alone: what Dial reads first to know
// which transports to try.
func ExampleGetInfo() {
	srv := exampleServer()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, service := range []string{"/echo", "/disabled_websocket_echo", "/cookie_needed_echo"} {
		info, err := client.GetInfo(ctx, http.DefaultClient, srv.URL+service+"/info", nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s websocket=%v cookie_needed=%v\n", service, info.WebSocket, info.CookieNeeded)
	}
	// Output:
	// /echo websocket=true cookie_needed=false
	// /disabled_websocket_echo websocket=false cookie_needed=false
	// /cookie_needed_echo websocket=true cookie_needed=true
}
