package services_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

// Echo is a session handler: give it to transport.New for an echo
// service at any prefix.
func ExampleEcho() {
	h := transport.New("/ping-pong", transport.Options{}, services.Echo)
	mux := http.NewServeMux()
	mux.Handle("/ping-pong/", h)
	srv := httptest.NewServer(transport.KeepPaths(mux, h))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/ping-pong", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.Send("ping")
	fmt.Println(c.Recv(ctx))
	// Output:
	// ping <nil>
}

// Close closes each session as soon as it opens: what the client sees is
// the open frame, then the close frame.
func ExampleClose() {
	h := transport.New("/close", transport.Options{}, services.Close)
	mux := http.NewServeMux()
	mux.Handle("/close/", h)
	srv := httptest.NewServer(transport.KeepPaths(mux, h))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/close", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	<-c.Done()
	fmt.Println(c.CloseInfo())
	// Output:
	// 3000 Go away! true
}

// Protocol and Mount give the services the SockJS protocol suite tests,
// on a gorilla/mux router (SkipClean(true): the suite checks that unclean
// URLs answer 404). Each answers its greeting at its prefix.
func ExampleProtocol() {
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(transport.Options{})...)
	services.Mount(r, services.Demo(transport.Options{}, 5*time.Second))
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, prefix := range []string{"/echo", "/close", "/disabled_websocket_echo", "/cookie_needed_echo", services.DemoPrefix, "/echo//"} {
		res, err := http.Get(srv.URL + prefix)
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Printf("%s %d %q\n", prefix, res.StatusCode, b)
	}
	// Output:
	// /echo 200 "Welcome to SockJS!\n"
	// /close 200 "Welcome to SockJS!\n"
	// /disabled_websocket_echo 200 "Welcome to SockJS!\n"
	// /cookie_needed_echo 200 "Welcome to SockJS!\n"
	// /demo 200 "Welcome to SockJS!\n"
	// /echo// 404 "404 Error: Page not found\n"
}
