package gorillamux_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// On gorilla/mux: SkipClean(true), so that the router leaves the
// protocol's unclean URLs alone, then Mount.
func ExampleMount() {
	echo := transport.New("/echo", transport.Options{}, func(s *session.Session) {
		s.OnMessage(func(msg string) { _ = s.Send(msg) })
	})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, echo)
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/echo", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.Send("hello")
	msg, err := c.Recv(ctx)
	fmt.Println(c.Transport(), msg, err)
	// Output:
	// websocket hello <nil>
}
