package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestMeasureCluster prints the cost of cluster mode (make cluster-bench;
// it runs only when SOCKJSD_CLUSTER_MEASURE=1):
//   - xhr-polling echo with cmd/loadgen (100 sessions) against one node
//     directly, through haproxy over that one node, and through haproxy
//     over three nodes (round robin: 2 of 3 requests forwarded), rounds
//     interleaved; the figure of issue 18 is the last ÷ the second (the
//     balancer's own cost out), the median of the rounds' ratios; and
//     through haproxy hashing each session's path over the three nodes
//     (hashBalance: no forwarding), against the same second arm. The
//     nodes' CPU time per message is printed too: on a machine shared with
//     other work it moves less than msgs/s does;
//   - the time one xhr_send takes when the node it lands on owns the
//     session and when it forwards it to the owner (p50/p99), and the
//     difference: what forwarding adds to one request.
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
		MsgsPerSec float64       `json:"msgs_per_sec"`
		Messages   float64       `json:"messages"`
		P50ms      float64       `json:"p50_ms"`
		P99ms      float64       `json:"p99_ms"`
		Errors     int64         `json:"errors"`
		cpuPerMsg  time.Duration // the nodes' CPU time (user + system) per message
		fwdPerMsg  float64       // requests forwarded between nodes per message
	}
	run := func(url string) result {
		before, fwdBefore := env.nodesCPU(t), env.forwarded(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, loadgen, "-url", url+"/echo", "-transport", "xhr-polling", "-n", "100", "-d", "5s", "-quiet", "-json").Output()
		var r result
		if jerr := json.Unmarshal(out, &r); jerr != nil || err != nil || r.Messages == 0 {
			t.Fatalf("loadgen %s: %v %v %q", url, err, jerr, out)
		}
		r.cpuPerMsg = time.Duration(float64(env.nodesCPU(t)-before) / r.Messages)
		r.fwdPerMsg = (env.forwarded(t) - fwdBefore) / r.Messages
		return r
	}
	// haproxy with node1 as its three servers: the balancer's own cost,
	// without forwarding.
	one := env.startHAProxy([]*node{env.nodes[0], env.nodes[0], env.nodes[0]})
	// haproxy hashing each session's path over the 3 nodes (the
	// alternative deploy/haproxy.cfg describes): no forwarding.
	hashed := env.startHAProxyOn(env.nodes, freePort(t), hashBalance...)
	const rounds = 5
	var direct, lbOne, balanced, hashedRuns []result
	var ratios, hashRatios []float64 // per round: 3 nodes ÷ haproxy over one node
	for range rounds {
		direct = append(direct, run(env.nodes[0].url))
		lbOne = append(lbOne, run(one))
		balanced = append(balanced, run(env.lb))
		hashedRuns = append(hashedRuns, run(hashed))
		o := lbOne[len(lbOne)-1].MsgsPerSec
		ratios = append(ratios, balanced[len(balanced)-1].MsgsPerSec/o)
		hashRatios = append(hashRatios, hashedRuns[len(hashedRuns)-1].MsgsPerSec/o)
	}
	med := func(rs []result) result {
		rs = slices.Clone(rs)
		slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.MsgsPerSec, b.MsgsPerSec) })
		return rs[len(rs)/2]
	}
	medCPU := func(rs []result) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, r.cpuPerMsg)
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	slices.Sort(ratios)
	slices.Sort(hashRatios)
	d, o, b, h := med(direct), med(lbOne), med(balanced), med(hashedRuns)
	t.Logf("xhr-polling echo, 100 sessions, median of %d interleaved rounds (CPU: the nodes' user+system time per message; fwd: requests forwarded between nodes per message):\n"+
		"  one node directly          %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  CPU %4.0f µs/msg\n"+
		"  haproxy over one node      %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  CPU %4.0f µs/msg  (%.2f of direct)\n"+
		"  haproxy over 3 nodes       %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  CPU %4.0f µs/msg  (%.2f of direct)  fwd %.2f\n"+
		"  3 nodes, session hash      %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  CPU %4.0f µs/msg  (%.2f of direct)  fwd %.2f\n"+
		"  3 nodes ÷ haproxy over one node: %.2f (median of the rounds' ratios; range %.2f-%.2f); nodes' CPU per message %.2fx\n"+
		"  3 nodes hashing the session ÷ haproxy over one node: %.2f (range %.2f-%.2f); nodes' CPU per message %.2fx",
		rounds,
		d.MsgsPerSec, d.P50ms, d.P99ms, us(medCPU(direct)),
		o.MsgsPerSec, o.P50ms, o.P99ms, us(medCPU(lbOne)), o.MsgsPerSec/d.MsgsPerSec,
		b.MsgsPerSec, b.P50ms, b.P99ms, us(medCPU(balanced)), b.MsgsPerSec/d.MsgsPerSec, b.fwdPerMsg,
		h.MsgsPerSec, h.P50ms, h.P99ms, us(medCPU(hashedRuns)), h.MsgsPerSec/d.MsgsPerSec, h.fwdPerMsg,
		ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], float64(medCPU(balanced))/float64(medCPU(lbOne)),
		hashRatios[len(hashRatios)/2], hashRatios[0], hashRatios[len(hashRatios)-1], float64(medCPU(hashedRuns))/float64(medCPU(lbOne)))

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
	t.Logf("xhr_send, %d each, interleaved: on the owner p50 %v p99 %v; forwarded p50 %v p99 %v\n"+
		"  added per forwarded request: p50 +%v p99 +%v",
		len(local), pct(local, .5), pct(local, .99), pct(forwarded, .5), pct(forwarded, .99),
		pct(forwarded, .5)-pct(local, .5), pct(forwarded, .99)-pct(local, .99))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// nodesCPU is the CPU time (user + system) the cluster's nodes used so
// far, from /proc/<pid>/stat.
func (e *clusterEnv) nodesCPU(t *testing.T) time.Duration {
	t.Helper()
	var total time.Duration
	for _, n := range e.nodes {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.p.Cmd.Process.Pid))
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		// Fields after the command name, which is in parentheses: utime
		// and stime are the 12th and 13th, in clock ticks (100 a second
		// on Linux).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			t.Fatalf("%s: /proc stat %q", n.name, b)
		}
		for _, s := range f[11:13] {
			ticks, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("%s: /proc stat %q", n.name, b)
			}
			total += time.Duration(ticks) * (time.Second / 100)
		}
	}
	return total
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
