package adversarial

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// fromDialer dials from the loopback address src (Linux routes all of
// 127/8 to lo).
func fromDialer(src string) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

// httpFrom is an HTTP client whose connections come from src.
func httpFrom(src string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: fromDialer(src).DialContext, DisableCompression: true}}
}

// metricFrom is srv.Metric through c (a client from another address,
// whose kept-alive connection outlasts a flood that fills the caps).
func metricFrom(t *testing.T, srv *Server, c *http.Client, name string, labels ...string) float64 {
	t.Helper()
	res, err := c.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", res.StatusCode, err)
	}
	return parseMetric(t, string(b), name, labels...)
}

// flood opens n connections from src, each sending GET /healthz with
// keep-alive, and keeps the accepted ones open (closed by closeAll, or at cleanup). A
// connection is accepted when it gets 200, refused when it gets the
// listener's 503 or is closed (reset) without an answer.
func flood(t *testing.T, srv *Server, src string, n int) (accepted, refused int, closeAll func()) {
	t.Helper()
	var acc, ref atomic.Int32
	var mu sync.Mutex
	var other []string
	var conns []net.Conn
	closeAll = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(closeAll)
	parallel(n, 64, func(int) {
		c, err := fromDialer(src).Dial("tcp", srv.Addr)
		if err != nil {
			mu.Lock()
			other = append(other, err.Error())
			mu.Unlock()
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case err == nil && res.StatusCode == 200:
			acc.Add(1)
		case err == nil && res.StatusCode == 503 && res.Close:
			ref.Add(1)
		case err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
			ref.Add(1)
		default:
			mu.Lock()
			other = append(other, fmt.Sprintf("%v %v", res, err))
			mu.Unlock()
		}
	})
	if len(other) > 0 {
		t.Errorf("%d flood connections from %s neither answered 200 nor refused, e.g. %s", len(other), src, other[0])
	}
	return int(acc.Load()), int(ref.Load()), closeAll
}

// TestConnectionFlood: 400 connections held open from 127.0.0.1, past
// -max-connections-per-address (100 here), are refused at accept (the
// 503, or a reset when the request had already arrived) and counted; a
// client from 127.0.0.2 still connects and echoes. Then 100 connections
// from each of 127.0.0.3 and 127.0.0.4 reach -max-connections (250 here)
// and the rest are refused under max_connections. Before the caps the
// server accepted every connection until it ran out of descriptors: one
// address could take them all, and a client from anywhere else then got
// nothing.
func TestConnectionFlood(t *testing.T) {
	t.Parallel()
	const perAddr, total = 100, 250
	srv := Start(t, Config{Env: map[string]string{
		"SOCKJSD_MAX_CONNECTIONS_PER_ADDRESS": fmt.Sprint(perAddr), "SOCKJSD_MAX_CONNECTIONS": fmt.Sprint(total)}})
	other := httpFrom("127.0.0.2") // its kept-alive connection reads /metrics throughout
	defer other.CloseIdleConnections()
	refused0 := metricFrom(t, srv, other, "sockjs_connections_refused_total", "reason", "per_address")

	start := time.Now()
	acc, ref, _ := flood(t, srv, "127.0.0.1", 400)
	t.Logf("from 127.0.0.1: %d accepted, %d refused in %v", acc, ref, time.Since(start).Round(time.Millisecond))
	// Start's own request from 127.0.0.1 may still hold a slot.
	if acc > perAddr || acc < perAddr-1 || acc+ref != 400 {
		t.Errorf("from one address: %d accepted, %d refused of 400; want %d accepted", acc, ref, perAddr)
	}

	// Another address connects and echoes over websocket meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL+"/echo", client.Options{Transports: []string{client.WebSocket},
		HTTPClient: other, NetDialContext: fromDialer("127.0.0.2").DialContext})
	if err != nil {
		t.Fatalf("client from 127.0.0.2 during the flood: %v", err)
	}
	defer c.Close()
	if err := c.Send("hello"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Recv(ctx); err != nil || got != "hello" {
		t.Fatalf("echo from 127.0.0.2 during the flood: %q, %v", got, err)
	}
	if v := metricFrom(t, srv, other, "sockjs_connections_refused_total", "reason", "per_address") - refused0; int(v) != ref {
		t.Errorf("per_address refusals counted: %v, want %d", v, ref)
	}
	open := metricFrom(t, srv, other, "sockjs_connections_open")
	if open < float64(acc+2) || open > float64(acc+4) { // + the websocket and this request (+ Start's)
		t.Errorf("sockjs_connections_open: %v with %d flood connections open", open, acc)
	}

	// Two more addresses, 100 each (within the per-address cap), fill
	// what is left of the server-wide cap.
	left := total - int(open)
	var acc3, ref3 int
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, r, _ := flood(t, srv, src, perAddr)
			mu.Lock()
			acc3, ref3 = acc3+a, ref3+r
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("from 127.0.0.3 and .4: %d accepted, %d refused, with %d slots left", acc3, ref3, left)
	if acc3 > left || acc3 < left-1 || acc3+ref3 != 2*perAddr {
		t.Errorf("from two more addresses: %d accepted, %d refused of %d with %d slots left", acc3, ref3, 2*perAddr, left)
	}
	if v := metricFrom(t, srv, other, "sockjs_connections_refused_total", "reason", "max_connections"); int(v) != ref3 {
		t.Errorf("max_connections refusals counted: %v, want %d", v, ref3)
	}
}
