package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestMeasureCluster prints the cost of cluster mode (make cluster-bench;
// it runs only when SOCKJSD_CLUSTER_MEASURE=1):
//   - xhr-polling echo with cmd/loadgen (100 sessions) through haproxy over
//     three nodes against one node directly, rounds interleaved;
//   - the time one xhr_send takes when the node it lands on owns the
//     session and when it forwards it to the owner (p50/p99).
func TestMeasureCluster(t *testing.T) {
	if os.Getenv("SOCKJSD_CLUSTER_MEASURE") != "1" {
		t.Skip("a measurement, not a test: set SOCKJSD_CLUSTER_MEASURE=1 (make cluster-bench)")
	}
	env := startCluster(t, "-response-limit", "131072")
	loadgen := filepath.Join(t.TempDir(), "loadgen")
	build := exec.Command("go", "build", "-o", loadgen, "./cmd/loadgen")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build loadgen: %v\n%s", err, out)
	}
	type result struct {
		MsgsPerSec float64 `json:"msgs_per_sec"`
		P50ms      float64 `json:"p50_ms"`
		P99ms      float64 `json:"p99_ms"`
		Errors     int64   `json:"errors"`
	}
	run := func(url string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, loadgen, "-url", url+"/echo", "-transport", "xhr-polling", "-n", "100", "-d", "5s", "-quiet", "-json").Output()
		var r result
		if jerr := json.Unmarshal(out, &r); jerr != nil || err != nil {
			t.Fatalf("loadgen %s: %v %v %q", url, err, jerr, out)
		}
		return r
	}
	// haproxy with node1 as its three servers: the balancer's own cost,
	// without forwarding.
	one := env.startHAProxy([]*node{env.nodes[0], env.nodes[0], env.nodes[0]})
	var direct, lbOne, balanced []result
	for range 3 {
		direct = append(direct, run(env.nodes[0].url))
		lbOne = append(lbOne, run(one))
		balanced = append(balanced, run(env.lb))
	}
	med := func(rs []result) result {
		slices.SortFunc(rs, func(a, b result) int { return int(a.MsgsPerSec - b.MsgsPerSec) })
		return rs[len(rs)/2]
	}
	d, o, b := med(direct), med(lbOne), med(balanced)
	t.Logf("xhr-polling echo, 100 sessions, median of 3 interleaved rounds:\n"+
		"  one node directly      %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms\n"+
		"  haproxy over one node  %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  (%.2f of direct)\n"+
		"  haproxy over 3 nodes   %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  (%.2f of direct)",
		d.MsgsPerSec, d.P50ms, d.P99ms, o.MsgsPerSec, o.P50ms, o.P99ms, o.MsgsPerSec/d.MsgsPerSec,
		b.MsgsPerSec, b.P50ms, b.P99ms, b.MsgsPerSec/d.MsgsPerSec)

	// One send at a time on sessions node1 owns: straight to node1, or
	// to node2, which forwards it. Interleaved, so load hits both alike.
	owner, other := env.nodes[0].url, env.nodes[1].url
	var local, forwarded []time.Duration
	for i := range 20 {
		sid := fmt.Sprintf("m%d", i)
		if code, _ := rawPost(t, owner+"/echo/000/"+sid+"/xhr", ""); code != 200 {
			t.Fatalf("open: %d", code)
		}
		for range 100 {
			for _, via := range []string{owner, other} {
				start := time.Now()
				code := post(via+"/echo/000/"+sid+"/xhr_send", `["x"]`)
				d := time.Since(start)
				if code != 204 {
					t.Fatalf("send via %s: %d", via, code)
				}
				if via == owner {
					local = append(local, d)
				} else {
					forwarded = append(forwarded, d)
				}
			}
			if code, _ := rawPost(t, owner+"/echo/000/"+sid+"/xhr", ""); code != 200 {
				t.Fatalf("poll: %d", code)
			}
		}
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		slices.Sort(ds)
		return ds[int(float64(len(ds)-1)*p)]
	}
	t.Logf("xhr_send, %d each: on the owner p50 %v p99 %v; forwarded p50 %v p99 %v; added p50 %v p99 %v",
		len(local), pct(local, .5), pct(local, .99), pct(forwarded, .5), pct(forwarded, .99),
		pct(forwarded, .5)-pct(local, .5), pct(forwarded, .99)-pct(local, .99))
}

// keepAlive reuses connections, as a balancer does.
var keepAlive = &http.Client{Timeout: 30 * time.Second}

func post(url, body string) int {
	resp, err := keepAlive.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
