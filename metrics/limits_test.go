package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// TestLimitHitsCounted: refusals by limits show on
// sockjs_limit_hits_total{limit}, one per refusal.
func TestLimitHitsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/echo", transport.Options{MaxMessageBytes: 100, MaxSessions: 1, Session: session.Options{Observer: m}}, services.Echo))
	srv := httptest.NewServer(r)
	defer srv.Close()
	post := func(path, body string, hdr ...string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/echo"+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	long := strings.Repeat("x", 100)
	post("/000/"+long+"/xhr", "")
	post("/000/"+long+"/xhr", "")
	post("/000/a/xhr", "", "Referer", strings.Repeat("r", 10<<10))
	post("/000/a/xhr", "")
	post("/000/a/xhr_send", `["`+long+`"]`)
	post("/000/b/xhr", "")
	for limit, want := range map[string]float64{"id-length": 2, "request-info": 1, "body-size": 1, "sessions": 1, "send-queue": 0} {
		if got := value(t, reg, "sockjs_limit_hits_total", map[string]string{"limit": limit}); got != want {
			t.Errorf("limit %s: %v hits, want %v", limit, got, want)
		}
	}
}

func TestLimitHitAllocatesNothing(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	if a := testing.AllocsPerRun(1000, func() { m.LimitHit(session.XHRPolling, session.LimitBodySize) }); a != 0 {
		t.Fatalf("LimitHit allocates %v times", a)
	}
}
