package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	igm "github.com/igm/sockjs-go/v3/sockjs"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

func ours(t *testing.T) string {
	t.Helper()
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(transport.Options{ResponseLimit: 4096})...)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// igmServer serves igm/sockjs-go v3.0.2's echo at /echo and, with
// websocket off in /info, at /disabled_websocket_echo.
func igmServer(t *testing.T) string {
	t.Helper()
	echo := func(s igm.Session) {
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if s.Send(m) != nil {
				return
			}
		}
	}
	opts := igm.DefaultOptions
	opts.ResponseLimit = 4096
	noWS := opts
	noWS.Websocket = false
	r := http.NewServeMux()
	r.Handle("/echo/", igm.NewHandler("/echo", opts, echo))
	r.Handle("/disabled_websocket_echo/", igm.NewHandler("/disabled_websocket_echo", noWS, echo))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

func echoRoundTrips(t *testing.T, c *client.Conn, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		want := fmt.Sprintf("msg %d ☃ %s", i, strings.Repeat("x", i*37))
		if err := c.Send(want); err != nil {
			t.Fatal(err)
		}
		got, err := c.Recv(ctx)
		if err != nil || got != want {
			t.Fatalf("echo %d over %s: %q %v", i, c.Transport(), got, err)
		}
	}
}

func TestEchoEveryTransport(t *testing.T) {
	for _, srv := range []struct{ name, url string }{{"ours", ours(t)}, {"igm", igmServer(t)}} {
		for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling, client.EventSource} {
			t.Run(srv.name+"/"+tr, func(t *testing.T) {
				c, err := client.Dial(context.Background(), srv.url+"/echo", client.Options{Transports: []string{tr}})
				if err != nil {
					t.Fatal(err)
				}
				if c.Transport() != tr {
					t.Fatalf("transport %s", c.Transport())
				}
				echoRoundTrips(t, c, 60) // crosses several 4 KiB streaming rollovers
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if code, _, _ := c.CloseInfo(); code != 1000 {
					t.Fatalf("close code %d", code)
				}
			})
		}
	}
}

func TestServerClose(t *testing.T) {
	base := ours(t)
	for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling, client.EventSource} {
		c, err := client.Dial(context.Background(), base+"/close", client.Options{Transports: []string{tr}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := c.Recv(ctx); err != client.ErrClosed {
			t.Fatalf("%s: %v", tr, err)
		}
		cancel()
		if code, reason, _ := c.CloseInfo(); code != 3000 || reason != "Go away!" {
			t.Fatalf("%s: close %d %q", tr, code, reason)
		}
		<-c.Done()
	}
}

// proxy fronts target; refuseUpgrade answers 400 to websocket upgrades,
// buffer holds each response until it ends (as a buffering proxy does).
func proxy(t *testing.T, target string, refuseUpgrade, buffer bool) string {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	if buffer {
		rp.ModifyResponse = func(res *http.Response) error {
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			res.Body = io.NopCloser(bytes.NewReader(b))
			return err
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuseUpgrade && r.Header.Get("Upgrade") != "" {
			http.Error(w, "no upgrades here", http.StatusBadRequest)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestFallback(t *testing.T) {
	var cases []struct{ name, url, want string }
	for _, srv := range []struct{ name, url string }{{"ours", ours(t)}, {"igm", igmServer(t)}} {
		base := srv.url
		cases = append(cases, []struct{ name, url, want string }{
			{srv.name + "/websocket disabled in /info", base + "/disabled_websocket_echo", client.XHRStreaming},
			{srv.name + "/upgrade refused", proxy(t, base, true, false) + "/echo", client.XHRStreaming},
			{srv.name + "/streaming buffered", proxy(t, base, true, true) + "/echo", client.XHRPolling},
		}...)
	}
	base := cases[0].url
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial(context.Background(), tc.url, client.Options{ConnectTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Transport() != tc.want {
				t.Fatalf("fell back to %s, want %s", c.Transport(), tc.want)
			}
			echoRoundTrips(t, c, 10)
		})
	}
	t.Run("nothing works", func(t *testing.T) {
		_, err := client.Dial(context.Background(), proxy(t, strings.TrimSuffix(base, "/disabled_websocket_echo"), true, true)+"/echo",
			client.Options{Transports: []string{client.WebSocket, client.XHRStreaming}, ConnectTimeout: time.Second})
		if err == nil || !strings.Contains(err.Error(), "no transport") {
			t.Fatalf("want an error naming every attempt, got %v", err)
		}
	})
}
