//go:build linux

// Command barefan is the floor of `make bench`'s hub rows: the same
// websocket frame written, with one raw non-blocking send(2) each, to n
// loopback connections by one goroutine, at the hub rows' publish rate,
// with nothing else around it (no HTTP, no session, no hub). The hub's
// cost per delivery divided by this one's says how much of it is ours.
//
// Two processes, pinned like the bench's server and load generator:
//
//	barefan -addr A -n N -rate R -d D   the writer (the server's side)
//	barefan -read A -n N                the readers (the load generator's)
//
// Each prints one JSON object on stdout. The writer's frame is a
// websocket text frame of -size payload bytes (the hub row's a["…"]
// frame of one message is about as long), starting with the publish's
// wall-clock time in nanoseconds, so that the readers measure the delay
// from the start of a publish's loop to each delivery, as the hub rows do
// from the publish request.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "writer: listen address")
	read := flag.String("read", "", "reader: the writer's address (reader mode)")
	n := flag.Int("n", 10000, "connections")
	rate := flag.Float64("rate", 10, "writer: publishes (one frame to every connection) per second")
	d := flag.Duration("d", 6*time.Second, "writer: how long to publish")
	size := flag.Int("size", 112, "writer: the frame's payload bytes (at least 8)")
	localAddrs := flag.Int("local-addrs", 4, "reader: source addresses 127.0.0.1.. to spread the connections over")
	timeout := flag.Duration("timeout", 3*time.Minute, "both: the bound on connecting and on the whole run")
	flag.Parse()
	var out any
	var err error
	if *read != "" {
		out, err = reader(*read, *n, *localAddrs, *timeout)
	} else {
		out, err = writer(*addr, *n, *rate, *d, *size, *timeout)
	}
	if err != nil {
		log.Fatal(err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

// WriterResult is the writer's output.
type WriterResult struct {
	Conns      int     `json:"conns"`
	Publishes  int     `json:"publishes"`
	Writes     int64   `json:"writes"`
	Partial    int64   `json:"partial"` // writes the socket did not take whole (EAGAIN or short)
	CPUSeconds float64 `json:"cpu_seconds"`
	UsPerWrite float64 `json:"us_per_write"`
	// LoopMsMax is the longest publish loop's duration, ms: the last
	// connection's wait behind the others.
	LoopMsMax  float64 `json:"loop_ms_max"`
	LoopMsMean float64 `json:"loop_ms_mean"`
}

func writer(addr string, n int, rate float64, d time.Duration, size int, timeout time.Duration) (*WriterResult, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "listening")
	conns := make([]net.Conn, 0, n) // kept: their descriptors stay open
	fds := make([]int, 0, n)
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
	for len(conns) < n {
		c, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("accept %d of %d: %w", len(conns), n, err)
		}
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return nil, err
		}
		_ = rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
		conns = append(conns, c)
	}
	ln.Close()
	frame := make([]byte, 4+size)
	frame[0] = 0x81 // FIN, text
	if size < 126 {
		frame = frame[:2+size]
		frame[1] = byte(size)
	} else {
		frame[1] = 126
		binary.BigEndian.PutUint16(frame[2:], uint16(size))
	}
	payload := frame[len(frame)-size:]
	for i := range payload {
		payload[i] = 'x'
	}
	res := &WriterResult{Conns: n}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	cpu0 := cpuNow()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		t := time.Now()
		binary.BigEndian.PutUint64(payload, uint64(t.UnixNano()))
		for _, fd := range fds {
			k, err := sendNow(fd, frame)
			res.Writes++
			if err != nil || k < len(frame) {
				res.Partial++
			}
		}
		res.Publishes++
		loop := float64(time.Since(t)) / 1e6
		res.LoopMsMax = max(res.LoopMsMax, loop)
		res.LoopMsMean += loop
	}
	res.CPUSeconds = cpuNow() - cpu0
	if res.Publishes > 0 {
		res.LoopMsMean /= float64(res.Publishes)
	}
	if res.Writes > 0 {
		res.UsPerWrite = res.CPUSeconds * 1e6 / float64(res.Writes)
	}
	for _, c := range conns {
		c.Close() // the readers see the end
	}
	return res, nil
}

// sendNow is transport's write-now system call: send(2), MSG_DONTWAIT,
// without the runtime's entersyscall.
func sendNow(fd int, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// cpuNow is this process's user+system CPU seconds.
func cpuNow() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// ReaderResult is the readers' output.
type ReaderResult struct {
	Deliveries int64   `json:"deliveries"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	CPUSeconds float64 `json:"cpu_seconds"` // from the first delivery on (not connecting)
	Errors     int64   `json:"errors"`
}

// delays is a histogram of delivery delays in 0.1 ms buckets up to 10 s.
type delays struct{ b [100001]atomic.Int64 }

func (h *delays) add(ns int64) {
	i := max(ns/100_000, 0)
	h.b[min(i, int64(len(h.b)-1))].Add(1)
}

func (h *delays) quantile(q float64, total int64) float64 {
	want := int64(q * float64(total))
	var sum int64
	for i := range h.b {
		if sum += h.b[i].Load(); sum > want {
			return float64(i+1) / 10
		}
	}
	return float64(len(h.b)) / 10
}

func reader(addr string, n, localAddrs int, timeout time.Duration) (*ReaderResult, error) {
	var cpu0 float64
	var first sync.Once
	h := &delays{}
	var deliveries, errs atomic.Int64
	var maxNs atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(timeout)
	for i := range n {
		la := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%max(localAddrs, 1)))}
		dl := net.Dialer{LocalAddr: la, Deadline: deadline}
		c, err := dl.Dial("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial %d of %d: %w", i, n, err)
		}
		_ = c.SetReadDeadline(deadline)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReaderSize(c, 512)
			var hdr [4]byte
			for {
				if _, err := io.ReadFull(br, hdr[:2]); err != nil {
					if !errors.Is(err, io.EOF) {
						errs.Add(1)
					}
					return
				}
				size := int(hdr[1] & 0x7f)
				if size == 126 {
					if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
						errs.Add(1)
						return
					}
					size = int(binary.BigEndian.Uint16(hdr[2:4]))
				}
				var ts [8]byte
				if size < 8 {
					errs.Add(1)
					return
				}
				if _, err := io.ReadFull(br, ts[:]); err != nil {
					errs.Add(1)
					return
				}
				first.Do(func() { cpu0 = cpuNow() })
				ns := time.Now().UnixNano() - int64(binary.BigEndian.Uint64(ts[:]))
				h.add(ns)
				for m := maxNs.Load(); ns > m && !maxNs.CompareAndSwap(m, ns); m = maxNs.Load() {
				}
				deliveries.Add(1)
				if _, err := br.Discard(size - 8); err != nil {
					errs.Add(1)
					return
				}
			}
		}()
	}
	fmt.Fprintln(os.Stderr, "connected "+strconv.Itoa(n))
	wg.Wait()
	total := deliveries.Load()
	first.Do(func() { cpu0 = cpuNow() })
	res := &ReaderResult{Deliveries: total, Errors: errs.Load(), CPUSeconds: cpuNow() - cpu0, MaxMs: float64(maxNs.Load()) / 1e6}
	if total > 0 {
		res.P50ms, res.P99ms = h.quantile(.50, total), h.quantile(.99, total)
	}
	return res, nil
}
