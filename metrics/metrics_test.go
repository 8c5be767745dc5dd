package metrics_test

import (
	"bufio"
	"context"
	"encoding/json"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

func TestRecordingAllocatesNothing(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	allocs := testing.AllocsPerRun(1000, func() {
		m.SessionOpened(session.XHRStreaming)
		m.TimeToOpen(session.XHRStreaming, time.Millisecond)
		m.MessageReceived(session.WebSocket, 64)
		m.FrameWritten(session.WebSocket, session.FrameMessages, 3, 100)
		m.DeliveryDelay(session.XHRPolling, 3*time.Millisecond)
		m.ReceiveDelay(session.XHRPolling, time.Microsecond)
		m.HTTPRequest(session.EndpointXHRSend, 204, time.Millisecond)
		m.ObservePingRTT(session.EventSource, time.Millisecond)
		m.ObserveRTT("echo", session.XHRStreaming, time.Millisecond)
		m.ObserveWebSocketRTT("echo", session.WebSocket, time.Millisecond)
		m.SessionClosed(session.XHRStreaming, session.CauseClient, time.Second)
	})
	if allocs != 0 {
		t.Fatalf("recording events allocates %v times", allocs)
	}
}

// TestSeriesMoveOnEveryTransport drives real traffic over each transport
// and checks that its series moved.
func TestSeriesMoveOnEveryTransport(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	r := mux.NewRouter()
	r.SkipClean(true)
	opts := transport.Options{Session: session.Options{Observer: m}}
	gorillamux.Mount(r, transport.New("/echo", opts, services.Echo))
	srv := httptest.NewServer(r)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
		c, err := client.Dial(ctx, srv.URL+"/echo", client.Options{Transports: []string{tr}})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			_ = c.Send("hello")
			if _, err := c.Recv(ctx); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.Close()
	}
	// Raw websocket, eventsource, htmlfile and jsonp by hand.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/echo/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte("raw"))
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	ws.Close()
	for _, ep := range []string{"eventsource", "htmlfile?c=cb", "jsonp?c=cb"} {
		url := srv.URL + "/echo/000/" + testenv.NewID()
		res, err := http.Get(url + "/" + ep)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(res.Body)
		if strings.HasPrefix(ep, "jsonp") {
			_, _ = io.ReadAll(br)
			res.Body.Close()
			_, _ = http.Post(url+"/jsonp_send", "application/x-www-form-urlencoded", strings.NewReader("d=%5B%22x%22%5D"))
			res, _ = http.Get(url + "/" + ep)
			b, _ := io.ReadAll(res.Body)
			if !strings.Contains(string(b), `a[\"x\"]`) {
				t.Fatalf("jsonp echo: %q", b)
			}
		} else {
			// Read until the open frame arrived, then send and read the echo.
			for line, _ := br.ReadString('\n'); !strings.Contains(line, "o"); line, _ = br.ReadString('\n') {
			}
			_, _ = http.Post(url+"/xhr_send", "text/plain", strings.NewReader(`["x"]`))
			for line, _ := br.ReadString('\n'); !strings.Contains(line, "a["); line, _ = br.ReadString('\n') {
			}
		}
		res.Body.Close()
	}

	for _, tr := range []string{"websocket", "websocket-raw", "xhr-streaming", "xhr-polling", "eventsource", "htmlfile", "jsonp-polling"} {
		for _, name := range []string{"sockjs_sessions_opened_total", "sockjs_messages_received_total", "sockjs_messages_sent_total", "sockjs_sent_bytes_total"} {
			if v := value(t, reg, name, map[string]string{"transport": tr}); v <= 0 {
				t.Errorf("%s{transport=%q} = %v, want > 0", name, tr, v)
			}
		}
		if n := histCount(t, reg, "sockjs_delivery_delay_seconds", tr); n == 0 {
			t.Errorf("delivery delay for %s has no observations", tr)
		}
	}
	if v := value(t, reg, "sockjs_http_requests_total", map[string]string{"endpoint": "xhr_send", "code": "2xx"}); v <= 0 {
		t.Errorf("xhr_send requests: %v", v)
	}
	if v := value(t, reg, "sockjs_sessions_closed_total", map[string]string{"transport": "websocket", "reason": "client"}); v != 1 {
		t.Errorf("websocket sessions closed by the client: %v", v)
	}
	if testutil.CollectAndCount(reg, "sockjs_frames_written_total") == 0 {
		t.Error("no frame series")
	}
}

func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
		}
	}
	return 0
}

func histCount(t *testing.T, reg *prometheus.Registry, name, tr string) uint64 {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "transport" && lp.GetValue() == tr {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// TestDashboardUsesRealMetrics: every metric the Grafana dashboard plots
// exists.
func TestDashboardUsesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/sockjsd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct{ Targets []struct{ Expr string } }
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range metrics.Names() {
		have[n] = true
	}
	re := regexp.MustCompile(`sockjs_[a-z_]+`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				n++
				if base := strings.TrimSuffix(name, "_bucket"); !have[base] {
					t.Errorf("dashboard uses unknown metric %s", name)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("dashboard references only %d metrics", n)
	}
}
