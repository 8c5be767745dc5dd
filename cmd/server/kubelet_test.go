package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// podIPs stand for the pods' addresses: loopback addresses of their own,
// so that each pod has the whole port space as in its network namespace.
var podIPs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}

// freePortOnAll is a port free on every one of ips a moment ago.
func freePortOnAll(t *testing.T, ips []string) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		free := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			lns = append(lns, l)
		}
		for _, l := range lns {
			_ = l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatalf("no port free on all of %v in 20 tries", ips)
	return 0
}

// waitStatus polls url (every 20ms, within d) until it answers want.
func waitStatus(t *testing.T, url string, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, body := httpGet(url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q after %v, want %d", url, code, body, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// post is one bounded POST: the status and the body.
func post(url, body string) (int, string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// crossPodEcho opens an xhr-polling session on pods[0], sends on pods[1]
// and polls on pods[2]: the other pods forward to the owner at the
// address it advertises.
func crossPodEcho(pods []*binaryProc, id, msg string) error {
	steps := []struct {
		pod            *binaryProc
		endpoint, body string
		wantCode       int
		wantBody       string
	}{
		{pods[0], "xhr", "", 200, "o\n"},
		{pods[1], "xhr_send", `["` + msg + `"]`, 204, ""},
		{pods[2], "xhr", "", 200, `a["` + msg + `"]` + "\n"},
	}
	for _, s := range steps {
		code, body, err := post("http://"+s.pod.addr+"/echo/000/"+id+"/"+s.endpoint, s.body)
		if err != nil {
			return fmt.Errorf("%s on %s: %w", s.endpoint, s.pod.addr, err)
		}
		if code != s.wantCode || body != s.wantBody {
			return fmt.Errorf("%s on %s: %d %q, want %d %q", s.endpoint, s.pod.addr, code, body, s.wantCode, s.wantBody)
		}
	}
	return nil
}

// TestKubernetesPods runs the Deployment's pods as the kubelet would, as
// far as one machine without Kubernetes allows: the binary built as
// deploy/Dockerfile builds it (static: CGO off; without the embedded
// client, which needs npm), three processes with exactly the container's
// environment and nothing else (the Secret's values, the pod IP from the
// downward API, GOMEMLIMIT), each on a loopback address of its own as its
// pod IP, and redis-server for the Redis Service. The probes answer as
// the kubelet wants them to, a session's requests spread over the three
// pods reach it through the advertised pod IPs, and a pod stopped as the
// kubelet stops it (SIGTERM) fails readiness at once, passes liveness
// while it drains, and exits before the grace period would end in
// SIGKILL, while the other pods carry on.
func TestKubernetesPods(t *testing.T) {
	testenv.SkipIfShort(t, "redis-server and a build of the binary")
	redis := testenv.StartRedis(t)
	dep, c, objs := sockjsdPod(t, loadK8sFiles(t))
	bin := buildBinary(t, []string{"CGO_ENABLED=0"})
	containerPort := strconv.Itoa(c.Ports[0].ContainerPort)
	port := strconv.Itoa(freePortOnAll(t, podIPs))

	var pods []*binaryProc
	var drainDelay time.Duration
	for _, ip := range podIPs {
		env, err := containerEnv(c, objs, ip)
		if err != nil {
			t.Fatal(err)
		}
		// In its pod the server listens on every address of the pod's
		// network namespace; here the three share one, so each takes its
		// pod IP, on a port free here (the manifest's may be in use).
		if env["SOCKJSD_ADDR"] != ":"+containerPort {
			t.Fatalf("SOCKJSD_ADDR %q: the test expects :%s", env["SOCKJSD_ADDR"], containerPort)
		}
		env["SOCKJSD_ADDR"] = net.JoinHostPort(ip, port)
		env["SOCKJSD_CLUSTER_ADVERTISE"] = strings.Replace(env["SOCKJSD_CLUSTER_ADVERTISE"], ":"+containerPort, ":"+port, 1)
		u, err := url.Parse(env["SOCKJSD_REDIS"])
		if err != nil {
			t.Fatal(err)
		}
		u.Host = redis.Addr // the Redis Service
		env["SOCKJSD_REDIS"] = u.String()
		if drainDelay, err = time.ParseDuration(env["SOCKJSD_DRAIN_DELAY"]); err != nil {
			t.Fatalf("SOCKJSD_DRAIN_DELAY: %v", err)
		}
		var list []string
		for k, v := range env {
			list = append(list, k+"="+v)
		}
		sort.Strings(list)
		pods = append(pods, runBinary(t, bin, net.JoinHostPort(ip, port), list))
	}

	ready, live := c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path
	for _, p := range pods {
		waitStatus(t, "http://"+p.addr+ready, http.StatusOK, 30*time.Second)
		waitStatus(t, "http://"+p.addr+live, http.StatusOK, 10*time.Second)
	}
	if err := crossPodEcho(pods, "k8s-before", "across-pods"); err != nil {
		t.Fatalf("a session across the three pods: %v", err)
	}

	grace := k8sDefaultGrace
	if dep.Template.Spec.TerminationGracePeriodSeconds != nil {
		grace = *dep.Template.Spec.TerminationGracePeriodSeconds
	}
	sigAt := pods[0].signal(t, syscall.SIGTERM)
	waitStatus(t, "http://"+pods[0].addr+ready, http.StatusServiceUnavailable, 10*time.Second)
	if code, body := httpGet("http://" + pods[0].addr + live); code != http.StatusOK {
		t.Errorf("liveness while draining: %d %q, want 200 (the kubelet would restart a draining pod)", code, body)
	}
	select {
	case <-pods[0].exited:
	case <-time.After(time.Duration(grace) * time.Second):
		t.Fatalf("the pod did not exit within terminationGracePeriodSeconds (%ds): the kubelet would SIGKILL it", grace)
	}
	if pods[0].err != nil {
		t.Errorf("the pod exited with %v", pods[0].err)
	}
	took := pods[0].exitAt.Sub(sigAt)
	if took < drainDelay {
		t.Errorf("the pod exited %v after SIGTERM, before its %v drain delay", took, drainDelay)
	}
	t.Logf("pod stopped %v after SIGTERM (drain delay %v, grace period %ds)", took.Round(time.Millisecond), drainDelay, grace)

	// The two left serve new sessions between them.
	if err := crossPodEcho([]*binaryProc{pods[1], pods[2], pods[1]}, "k8s-after", "still-here"); err != nil {
		t.Errorf("a session on the pods left: %v", err)
	}
}
