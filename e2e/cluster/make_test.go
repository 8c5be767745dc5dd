package cluster

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// freeRun finds a port p with p+1..p+n-1 free as well (deploy/cluster.sh
// puts the nodes on the ports after the balancer's). It looks below the
// kernel's ephemeral range (32768 and up here): after a test that opened
// thousands of connections, runs of free ports there can be rare enough
// that 50 tries found none.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 200 {
		base := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base))
		if err != nil {
			continue
		}
		ln.Close()
		ok := true
		for i := 1; i < n && ok; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("found no %d free ports in a row", n)
	return 0
}

// TestMakeCluster runs `make cluster` as a newcomer would (on other ports,
// with the binary in a temporary directory): the nodes must be what `make
// build` builds, so the demo page through the balancer gets the npm
// sockjs-client from the nodes themselves, not from a CDN.
func TestMakeCluster(t *testing.T) {
	need(t, "redis-server", "haproxy", "make", "curl", "npm")
	root := testenv.RepoRoot(t)
	npmClient, err := os.ReadFile(filepath.Join(testenv.NPMPackage(t, filepath.Join(root, "web", "sockjs-client"), "sockjs-client", "deps-client"), "dist", "sockjs.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	port, redisPort := freeRun(t, 4), freePort(t)
	bin := filepath.Join(t.TempDir(), "sockjsd")
	out := &testenv.Buffer{}
	cmd := exec.Command("make", "--no-print-directory", "cluster", "BIN="+bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), fmt.Sprintf("CLUSTER_PORT=%d", port), fmt.Sprintf("REDIS_PORT=%d", redisPort))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C goes to the whole group
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("output of make cluster:\n%s", tail(out.String(), 4000))
		}
	})
	lb := fmt.Sprintf("http://127.0.0.1:%d", port)
	// The build (npm ci when missing, go build) comes first.
	waitFor(t, 5*time.Minute, "make cluster to say the cluster is up", func() bool {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("make cluster ended before the cluster was up: %v", err)
		default:
		}
		return strings.Contains(out.String(), "cluster up: demo "+lb+"/")
	})
	if s := out.String(); !strings.Contains(s, "-tags sockjsd_embed -o "+bin+" ./cmd/server") {
		t.Errorf("make cluster did not build %s as make build does:\n%s", bin, s)
	}
	resp, err := httpClient.Get(lb + "/sockjs-client/sockjs.min.js")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, npmClient) {
		t.Fatalf("the balancer served /sockjs-client/sockjs.min.js with %d and %d bytes; want 200 and the npm package's %d bytes", resp.StatusCode, len(got), len(npmClient))
	}
	// The demo page loads that copy, not the CDN's.
	resp, err = httpClient.Get(lb + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(page, []byte(`src="/sockjs-client/sockjs.min.js"`)) {
		t.Fatalf("the demo page does not load the built-in client:\n%s", page)
	}

	// Ctrl-C stops everything: make ends, and no node answers any more.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatal("make cluster did not stop within 30s of Ctrl-C")
	}
	if !strings.Contains(out.String(), "cluster stopped") {
		t.Error("deploy/cluster.sh did not say it stopped")
	}
	for i := 1; i <= 3; i++ {
		if c := status(fmt.Sprintf("http://127.0.0.1:%d/healthz", port+i)); c != 0 {
			t.Errorf("node %d still answers (%d) after Ctrl-C", i, c)
		}
	}
}
