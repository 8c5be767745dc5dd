package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sockjsd/sockjsd/bridge"
	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// The metrics are the sessions' observer: give them to every service
// through transport.Options.Session.Observer, and serve the registry.
// Every labelled series exists from the start, at zero.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	opts := transport.Options{Session: session.Options{Observer: m}}

	echo := transport.New("/echo", opts, services.Echo)
	mux := http.NewServeMux()
	mux.Handle("/echo/", echo)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(transport.KeepPaths(mux, echo))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/echo", client.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, msg := range []string{"one", "two"} {
		_ = c.Send(msg)
		if _, err := c.Recv(ctx); err != nil {
			fmt.Println(err)
			return
		}
	}

	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer res.Body.Close()
	show := []string{
		`sockjs_sessions_opened_total{transport="websocket"} `,
		`sockjs_messages_received_total{transport="websocket"} `,
		`sockjs_messages_received_total{transport="xhr-polling"} `,
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		for _, prefix := range show {
			if strings.HasPrefix(sc.Text(), prefix) {
				fmt.Println(sc.Text())
			}
		}
	}
	// Output:
	// sockjs_messages_received_total{transport="websocket"} 2
	// sockjs_messages_received_total{transport="xhr-polling"} 0
	// sockjs_sessions_opened_total{transport="websocket"} 1
}

// The same Metrics observes the hub (its ping round trips, dropped and
// reset subscribers) and, through Exec, the exec bridge's programs.
// (Not run: it serves on a fixed port.)
func ExampleMetrics_Exec() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	opts := transport.Options{Session: session.Options{Observer: m}}

	h := hub.New(hub.Options{Observer: m})
	b, err := bridge.New(bridge.Options{Name: "/exec", Argv: []string{"cat"}, Observer: m.Exec()})
	if err != nil {
		log.Fatal(err)
	}
	hubService := transport.New("/hub", opts, h.Serve)
	execService := transport.New("/exec", opts, b.Serve)

	mux := http.NewServeMux()
	mux.Handle("/hub/", hubService)
	mux.Handle("/exec/", execService)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", transport.KeepPaths(mux, hubService, execService)))
}
