package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// pinning reports whether servers and load generators are pinned to
// different CPUs: with -pin, on a machine with two or more, with taskset.
func pinning() bool {
	if !*pin || runtime.NumCPU() < 2 {
		return false
	}
	_, err := exec.LookPath("taskset")
	return err == nil
}

// pinArgs is the command line running name with args on the given CPU
// when pinning (taskset execs the program, so the pid is the program's).
func pinArgs(cpu int, name string, args ...string) (string, []string) {
	if pinning() {
		return "taskset", append([]string{"-c", strconv.Itoa(cpu), name}, args...)
	}
	return name, args
}

// pinned is exec.Command through pinArgs.
func pinned(cpu int, name string, args ...string) *exec.Cmd {
	n, a := pinArgs(cpu, name, args...)
	return exec.Command(n, a...)
}

// freePort is a loopback port nobody listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, err := net.SplitHostPort(l.Addr().String())
	return p, err
}

// running is a started server.
type running struct {
	cmd  *exec.Cmd
	addr string
	stop func()
}

func (r *running) pid() int { return r.cmd.Process.Pid }

// start runs a fresh server process on a free loopback port and waits
// (bounded) until its /echo/info answers.
func start(s server) (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + port
	cmd := s.cmd(port)
	stdin, _ := cmd.StdinPipe() // sockjs-node exits when its stdin closes
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := hc.Get("http://" + addr + "/echo/info")
		if err == nil {
			res.Body.Close()
			hc.CloseIdleConnections()
			return &running{cmd, addr, stop}, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s did not start: %v", s.name, err)
		}
		time.Sleep(50 * time.Millisecond) // waiting for a process to listen; bounded
	}
}

// cpuSeconds is the process's user+system CPU time from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64) // utime, field 14
	st, _ := strconv.ParseFloat(f[12], 64) // stime, field 15
	return (ut + st) / 100                 // USER_HZ
}

func rssBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// fdLimit is this process's open-file limit (the children inherit it).
func fdLimit() int {
	out, err := exec.Command("sh", "-c", "ulimit -n").Output()
	if err != nil {
		return 1024
	}
	s := strings.TrimSpace(string(out))
	if s == "unlimited" {
		return 1 << 20
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 1024
	}
	return n
}

// runLoadgen runs cmd/loadgen (pinned to CPU 1) with args, calls atStart
// and atEnd when it begins and ends measuring, and decodes its JSON into
// out.
func runLoadgen(args []string, limit time.Duration, atStart, atEnd func(), out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	n, a := pinArgs(1, bin("loadgen"), append(args, "-json", "-quiet", "-marks")...)
	cmd := exec.CommandContext(ctx, n, a...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	var tail []string // the load generator's last complaints, for the error
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		switch sc.Text() {
		case "measure start":
			atStart()
		case "measure end":
			atEnd()
		default:
			tail = append(tail[max(0, len(tail)-2):], sc.Text())
		}
	}
	werr := cmd.Wait()
	if jerr := json.Unmarshal([]byte(stdout.String()), out); jerr != nil {
		if werr != nil {
			return fmt.Errorf("loadgen: %v: %s", werr, strings.Join(tail, "; "))
		}
		return jerr
	}
	if werr != nil {
		return fmt.Errorf("loadgen: %v: %s", werr, strings.Join(tail, "; "))
	}
	return nil
}
