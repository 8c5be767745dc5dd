package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The HTTP transports' request path as shipped: the binary's whole handler
// stack (middleware, router, metrics observer, /echo) behind net/http on
// a real loopback socket, driven by a raw HTTP/1.1 client that allocates
// nothing per request, so that allocs/op are the server's. One op is one
// echo: an xhr_send POST answered 204 and the echo delivered on a poll
// (BenchmarkXHRPollingEcho) or on an xhr_streaming answer
// (BenchmarkXHRStreamingEcho), as in `make bench`'s xhr rows.

// benchServer starts the shipped server on a loopback port.
func benchServer(b *testing.B) string {
	b.Helper()
	_, addr := startServer(b, "-log-level", "error")
	return addr
}

// reportCPU reports the process's CPU time (user + system) per op from
// now until the returned function runs: on a shared machine ns/op mostly
// measures the other processes, CPU time much less so. It includes the
// client's share, which allocates nothing and stays the same.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawConn is one keep-alive HTTP/1.1 connection with prebuilt requests.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(b *testing.B, addr string) *rawConn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	// Every read and write is bounded: a server that stops answering
	// fails the benchmark instead of hanging it.
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}
}

// rawPost is a request as net/http's client sends it (the load generator's).
func rawPost(addr, path, body string) []byte {
	return []byte("POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: Go-http-client/1.1\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nContent-Type: text/plain;charset=UTF-8\r\n" +
		"Accept-Encoding: gzip\r\n\r\n" + body)
}

// head reads an answer's status line and headers: the status, the
// Content-Length (-1: none) and whether the body is chunked.
func (rc *rawConn) head() (status, length int, chunked bool, err error) {
	length = -1
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, err
	}
	if len(line) < 12 {
		return 0, 0, false, fmt.Errorf("status line %q", line)
	}
	status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	for {
		line, err = rc.br.ReadSlice('\n')
		if err != nil {
			return 0, 0, false, err
		}
		if len(line) <= 2 {
			return status, length, chunked, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length = 0
			for _, c := range bytes.TrimSpace(v) {
				length = length*10 + int(c-'0')
			}
		}
		if bytes.HasPrefix(line, []byte("Transfer-Encoding: chunked")) {
			chunked = true
		}
	}
}

// do writes req and reads its answer (Content-Length bodies only), which
// must have status want; the body is valid until the next read.
func (rc *rawConn) do(req []byte, want int) ([]byte, error) {
	if _, err := rc.c.Write(req); err != nil {
		return nil, err
	}
	status, n, _, err := rc.head()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		n = 0
	}
	body, err := rc.br.Peek(n)
	if err != nil {
		return nil, err
	}
	_, _ = rc.br.Discard(n)
	if status != want {
		return nil, fmt.Errorf("status %d, want %d: %q", status, want, body)
	}
	return body, nil
}

// send does an xhr_send request, which must be answered 204.
func (rc *rawConn) send(b *testing.B, req []byte) {
	if _, err := rc.do(req, 204); err != nil {
		b.Fatal("send: ", err)
	}
}

// chunk reads one chunk of a chunked answer; an empty one is the last.
func (rc *rawConn) chunk() ([]byte, error) {
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
	if err != nil {
		return nil, fmt.Errorf("chunk size %q: %w", line, err)
	}
	p, err := rc.br.Peek(int(n) + 2)
	if err != nil {
		return nil, err
	}
	_, _ = rc.br.Discard(int(n) + 2)
	return p[:n], nil
}

var benchMessage = strings.Repeat("x", 64)

func BenchmarkXHRPollingEcho(b *testing.B) {
	addr := benchServer(b)
	sid := "/echo/000/bench" + strconv.Itoa(b.N)
	send, poll := dialRaw(b, addr), dialRaw(b, addr)
	pollReq := rawPost(addr, sid+"/xhr", "")
	sendReq := rawPost(addr, sid+"/xhr_send", `["`+benchMessage+`"]`)
	if body, err := poll.do(pollReq, 200); err != nil || string(body) != "o\n" {
		b.Fatalf("open: %q, %v", body, err)
	}
	want := `a["` + benchMessage + "\"]\n"
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send.send(b, sendReq)
		body, err := poll.do(pollReq, 200)
		if err != nil {
			b.Fatal("poll: ", err)
		}
		if string(body) != want {
			b.Fatalf("poll: %q, want %q", body, want)
		}
	}
}

func BenchmarkXHRStreamingEcho(b *testing.B) {
	addr := benchServer(b)
	sid := "/echo/000/bench" + strconv.Itoa(b.N)
	streamReq := rawPost(addr, sid+"/xhr_streaming", "")
	sendReq := rawPost(addr, sid+"/xhr_send", `["`+benchMessage+`"]`)
	send := dialRaw(b, addr)
	// open starts a streaming answer (each on its own connection: the
	// server closes it at the answer's end) and reads past the prelude
	// to want, the first frame.
	open := func(want string) *rawConn {
		st := dialRaw(b, addr)
		if _, err := st.c.Write(streamReq); err != nil {
			b.Fatal(err)
		}
		if status, _, chunked, err := st.head(); err != nil || status != 200 || !chunked {
			b.Fatalf("streaming answer: %d chunked %v, %v", status, chunked, err)
		}
		for _, w := range []string{"", want} {
			p, err := st.chunk()
			if err != nil {
				b.Fatal(err)
			}
			if w != "" && string(p) != w {
				b.Fatalf("streaming answer: %q, want %q", p, w)
			}
		}
		return st
	}
	st := open("o\n")
	want := `a["` + benchMessage + "\"]\n"
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send.send(b, sendReq)
		p, err := st.chunk()
		if err == nil && len(p) == 0 { // the answer ended at its limit
			_ = st.c.Close()
			b.StopTimer()
			// The echo is queued for the next answer: it comes first.
			st = open(want)
			b.StartTimer()
			continue
		}
		if err != nil {
			b.Fatal("stream: ", err)
		}
		if string(p) != want {
			b.Fatalf("stream: %q, want %q", p, want)
		}
	}
}
