package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server started for one test, without persistence, in
// the test's temporary directory.
type Redis struct {
	Addr string // host:port
	URL  string // redis://host:port/0

	t    testing.TB
	dir  string
	port int
	args []string // extra redis-server arguments
	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

// StartRedis starts Debian's redis-server on a free loopback port and
// stops it when the test ends. It skips the test under -short or when
// redis-server is not installed.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	SkipIfShort(t, "redis-server")
	if _, err := exec.LookPath("redis-server"); err != nil {
		Missing(t, "redis-server on PATH (Debian: apt-get install redis-server)")
	}
	port := FreePort(t)
	r := &Redis{t: t, dir: t.TempDir(), port: port}
	r.Addr = "127.0.0.1:" + strconv.Itoa(port)
	r.URL = "redis://" + r.Addr + "/0"
	r.start()
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	args := append([]string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
	}, r.args...)
	cmd := exec.Command("redis-server", args...)
	logPath := filepath.Join(r.dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano()))
	log, err := os.Create(logPath)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = log.Close(); close(exit) }()
	r.mu.Lock()
	r.cmd, r.exit = cmd, exit
	r.mu.Unlock()
	// Ready when it answers PING.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			_ = c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
		select {
		case <-exit:
			out, _ := os.ReadFile(logPath)
			r.t.Fatalf("redis-server exited at start (port %d taken?):\n%s", r.port, out)
		case <-time.After(20 * time.Millisecond): // poll interval, bounded by the deadline
		}
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not answer PING within 10s")
		}
	}
}

// Stop kills the server and waits for it to exit. Data is lost (no
// persistence).
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, exit := r.cmd, r.exit
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		r.t.Error("redis-server did not exit within 10s of SIGKILL")
	}
}

// Unread is how many bytes clients wrote to the server that it has not
// read yet (and connections it has not accepted), from /proc/net/tcp:
// above 0 while frozen, some command is waiting for the server. 0 where
// /proc is missing.
func (r *Redis) Unread() int {
	total := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx_queue:rx_queue ...
			fs := strings.Fields(line)
			if len(fs) < 5 {
				continue
			}
			_, port, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(port, 16, 16); err != nil || int(p) != r.port {
				continue
			}
			_, rx, _ := strings.Cut(fs[4], ":")
			if n, err := strconv.ParseUint(rx, 16, 32); err == nil {
				total += int(n)
			}
		}
	}
	return total
}

func (r *Redis) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil {
		r.t.Fatalf("redis-server is not running: cannot send %v", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("redis-server: %v: %v", sig, err)
	}
}

// Restart stops the server and starts a new one on the same port, empty.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	r.start()
}

// Start starts a stopped server again on the same port.
func (r *Redis) Start() {
	r.t.Helper()
	r.start()
}
