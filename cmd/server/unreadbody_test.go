package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCloseOnUnreadBody: an answer given without reading the body comes
// at once with "Connection: close" and the connection is closed, though
// the client has sent 1 byte of a 100 KB body and sends no more (without
// the wrapper: no answer, the connection held while net/http waits for
// the body). A handler that reads its body keeps the connection alive,
// and one that writes nothing gets the same treatment.
func TestCloseOnUnreadBody(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/early", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("/silent", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	})
	srv := httptest.NewServer(closeOnUnreadBody(mux))
	defer srv.Close()

	for _, path := range []string{"/early", "/silent"} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx", path)
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		if !res.Close {
			t.Errorf("%s: answer without Connection: close", path)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: after the answer: %v, want the connection closed", path, err)
		}
	}

	// A body read to its end: the connection is reused.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		fmt.Fprintf(c, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read body, request %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.Close || strings.TrimSpace(string(b)) != "5" {
			t.Errorf("read body, request %d: %q, close %v", i, b, res.Close)
		}
	}
}
