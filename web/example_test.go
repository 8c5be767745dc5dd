package web_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/web"
)

// New("", log) serves everything from the binary. On an http.ServeMux it
// goes at "/", after the SockJS services; its sockjs-client (nil in a
// binary built without the sockjsd_embed tag) goes to each service's
// ClientScript, so that their iframe pages load the same copy.
func ExampleNew() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // New warns when sockjs-client is not built in
	site := web.New("", quiet)
	echo := transport.New("/echo", transport.Options{ClientScript: site.Client()}, services.Echo)
	mux := http.NewServeMux()
	mux.Handle("/echo/", echo)
	mux.Handle("/", site)
	srv := httptest.NewServer(transport.KeepPaths(mux, echo))
	defer srv.Close()

	for _, path := range []string{"/", "/sockjsd.js", "/hub-client.js"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Println(path, res.StatusCode)
	}
	// Output:
	// / 200
	// /sockjsd.js 200
	// /hub-client.js 200
}

// On a gorilla/mux router, Mount registers the site at "/": mount the
// SockJS services first, since "/" matches every path.
func ExampleMount() {
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(transport.Options{})...)
	web.Mount(r, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, path := range []string{"/echo", "/index.html"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Println(path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Output:
	// /echo 200 text/plain; charset=UTF-8
	// /index.html 200 text/html; charset=utf-8
}
