package webhook_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sockjsd/sockjsd/webhook"
)

// One event failed once then delivered shows in the metrics; the other
// series exist at zero; no URL shows.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := webhook.NewMetrics(reg)
	r := newReceiver(t)
	fails := make(chan struct{}, 1)
	fails <- struct{}{}
	r.status = func(webhook.Event) int {
		select {
		case <-fails:
			return 502
		default:
			return 0
		}
	}
	o := fast(r.url())
	o.Observer = m
	n := start(t, o)
	e := webhook.Event{ID: webhook.NewID(), Type: webhook.SessionOpened, Session: "s"}
	if err := n.Enqueue(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	r.waitAll(5*time.Second, []string{e.ID})
	// The Observer is told after the answer arrived: Shutdown waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	text := w.Body.String()
	for _, want := range []string{
		`sockjs_webhook_deliveries_total{outcome="ok",type="session.opened"} 1`,
		`sockjs_webhook_deliveries_total{outcome="status",type="session.opened"} 1`,
		`sockjs_webhook_deliveries_total{outcome="ok",type="user.offline"} 0`,
		`sockjs_webhook_retries_total{type="session.opened"} 1`,
		`sockjs_webhook_dropped_total{reason="expired"} 0`,
		`sockjs_webhook_dropped_total{reason="malformed"} 0`,
		`sockjs_webhook_delivery_seconds_count{type="session.opened"} 2`,
		`sockjs_webhook_queue_full_total 0`,
		`sockjs_webhook_queue_length 0`,
	} {
		if !strings.Contains(text, "\n"+want+"\n") {
			t.Errorf("no %s", want)
		}
	}
	if strings.Contains(text, "127.0.0.1") {
		t.Error("the URL shows in the metrics")
	}
}
