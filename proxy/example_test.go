package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/mux"

	sockjsclient "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/proxy"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// A backend drives a SockJS service over plain HTTP: it accepts the
// session as a user and answers each batch of messages. (A real backend
// checks X-Sockjsd-Signature first: docs/proxy.md.)
func ExampleGateway_Service() {
	backend := http.NewServeMux()
	backend.HandleFunc("POST /sockjs/connect", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"user":"alice","messages":["welcome, alice"]}`))
	})
	backend.HandleFunc("POST /sockjs/message", func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			User     string   `json:"user"`
			Messages []string `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&m)
		out := []string{}
		for _, msg := range m.Messages {
			out = append(out, m.User+" said "+strings.ToUpper(msg))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": out})
	})
	backend.HandleFunc("POST /sockjs/close", func(http.ResponseWriter, *http.Request) {})
	bsrv := httptest.NewServer(backend)
	defer bsrv.Close()

	gw, err := proxy.New(proxy.Options{Secret: []byte("shared with the backend")})
	if err != nil {
		panic(err)
	}
	serve, err := gw.Service("/app", bsrv.URL+"/sockjs")
	if err != nil {
		panic(err)
	}
	r := mux.NewRouter()
	r.SkipClean(true)
	h := transport.New("/app", transport.Options{}, serve)
	gorillamux.Mount(r, h)
	proxy.NewAPI(gw, proxy.APIOptions{Key: "api-key"}).Mount(r, "/api")
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sockjsclient.Dial(ctx, srv.URL+"/app", sockjsclient.Options{Transports: []string{"xhr-polling"}})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	first, _ := c.Recv(ctx)
	fmt.Println(first)
	_ = c.Send("hello")
	answer, _ := c.Recv(ctx)
	fmt.Println(answer)
	// Output:
	// welcome, alice
	// alice said HELLO
}

// In cluster mode a proxied service's HTTP sessions move to another node
// when this one drains (Handler.HandOff before Shutdown), without a close
// or connect request to the backend: its transport gets the gateway's
// HandOff along with the cluster node (transport.Options.Cluster, left
// out here).
func ExampleGateway_HandOff() {
	gw, err := proxy.New(proxy.Options{Secret: []byte("shared with the backend")})
	if err != nil {
		panic(err)
	}
	serve, err := gw.Service("/app", "http://127.0.0.1:9000/sockjs")
	if err != nil {
		panic(err)
	}
	ho, err := gw.HandOff("/app")
	if err != nil {
		panic(err)
	}
	h := transport.New("/app", transport.Options{HandOff: ho}, serve)
	fmt.Println(h.Prefix())
	// Output: /app
}
