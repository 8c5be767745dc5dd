package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

func TestHubFlags(t *testing.T) {
	t.Setenv("SOCKJSD_HUB_HISTORY_SIZE", "7")
	t.Setenv("SOCKJSD_REDIS", "redis://127.0.0.1:1/0")
	c, err := parseConfig([]string{"-hub-history-ttl", "1m", "-hub-max-subscriptions-per-address", "9"})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hub
	if h.HistorySize != 7 || h.HistoryTTL != time.Minute || h.MaxSubsPerAddress != 9 || c.RedisURL != "redis://127.0.0.1:1/0" {
		t.Fatalf("hub config %+v, redis %q", h, c.RedisURL)
	}
	if d, _ := parseConfig(nil); d.Hub.MaxSubs != 100 || d.Hub.MaxChannels != 100_000 || d.Hub.HistoryMaxBytes != 64<<20 || d.Hub.PresenceTTL != 5*time.Second {
		t.Fatalf("defaults %+v", d.Hub)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestClusterReadiness: with -redis, /readyz and sockjs_broker_up follow
// Redis, and publishes answer 503 while it is down; /healthz and
// /readyz?local (the balancer's check) stay ok.
func TestClusterReadiness(t *testing.T) {
	rs := testenv.StartRedis(t)
	_, addr := startServer(t, "-redis", rs.URL, "-cluster-secret", "test-secret", "-hub-presence-ttl", "600ms")
	base := "http://" + addr

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
			time.Sleep(20 * time.Millisecond) // polling the server, bounded
		}
	}
	metricUp := func(v string) func() bool {
		return func() bool { _, m := get(t, base+"/metrics"); return strings.Contains(m, "\nsockjs_broker_up "+v+"\n") }
	}
	ready := func(code int) func() bool { return func() bool { c, _ := get(t, base+"/readyz"); return c == code } }
	waitFor("ready", ready(200))
	waitFor("broker up", metricUp("1"))
	rs.Stop()
	waitFor("not ready", ready(503))
	waitFor("broker down", metricUp("0"))
	res, err := http.Post(base+"/api/publish", "application/json", strings.NewReader(`{"channel":"news","data":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 {
		t.Fatalf("publish with Redis down: %d", res.StatusCode)
	}
	if c, _ := get(t, base+"/healthz"); c != 200 {
		t.Fatalf("healthz: %d", c)
	}
	if c, b := get(t, base+"/readyz?local"); c != 200 {
		t.Fatalf("/readyz?local with Redis down: %d %q, want 200", c, b)
	}
	rs.Start()
	waitFor("ready again", ready(200))
	waitFor("broker up again", metricUp("1"))
}
