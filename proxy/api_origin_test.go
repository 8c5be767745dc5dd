package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/proxy"
)

// TestAPICrossSite: the server API refuses what a web page on another
// site can send, as the hub API does: an Origin that is not allowed (403),
// a POST that is not application/json, a missing Content-Type included
// (415); each refusal is counted and nothing reaches the session. Before,
// a POST with no Content-Type (a Blob body: a CORS "simple" request) or
// from any Origin was served.
func TestAPICrossSite(t *testing.T) {
	b := newBackend(t)
	b.connect = func(map[string]any) (int, string) { return 200, `{"user":"alice"}` }
	g := startGateway(t, proxy.Options{}, b)
	alice := dial(t, g.url+"/app0", "websocket")
	b.connected(t, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, m := apiCall(t, "GET", g.api+"/sessions?user=alice", "")
		if st == 200 && len(m["sessions"].([]any)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's session not listed: %d %v", st, m)
		}
		time.Sleep(5 * time.Millisecond)
	}

	var mu sync.Mutex
	refused := map[string]int{}
	r := mux.NewRouter()
	proxy.NewAPI(g.gw, proxy.APIOptions{AllowedOrigins: []string{"https://app.example"}, Refused: func(reason string) {
		mu.Lock()
		refused[reason]++
		mu.Unlock()
	}}).Mount(r, "/api")
	srv := httptest.NewServer(r)
	defer srv.Close()
	call := func(method, path, body, ct, origin string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		code, _ := m["error"].(string)
		return res.StatusCode, code
	}
	forged := `{"user":"alice","data":"forged"}`
	for _, c := range []struct {
		name, method, path, ct, origin string
		status                         int
		code                           string
	}{
		{"evil page, text/plain", "POST", "/api/send", "text/plain", "https://evil.example", 403, "forbidden_origin"},
		{"evil page, JSON", "POST", "/api/send", "application/json", "https://evil.example", 403, "forbidden_origin"},
		{"evil page, disconnect", "POST", "/api/disconnect", "application/json", "https://evil.example", 403, "forbidden_origin"},
		{"evil page, listing", "GET", "/api/sessions?user=alice", "", "https://evil.example", 403, "forbidden_origin"},
		{"no content type", "POST", "/api/send", "", "", 415, "unsupported_media_type"},
		{"text/plain", "POST", "/api/send", "text/plain", "", 415, "unsupported_media_type"},
		{"allowed page, text/plain", "POST", "/api/send", "text/plain", "https://app.example", 415, "unsupported_media_type"},
	} {
		if st, code := call(c.method, c.path, forged, c.ct, c.origin); st != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, st, code, c.status, c.code)
		}
	}
	mu.Lock()
	if refused["origin"] != 4 || refused["content_type"] != 3 {
		t.Errorf("refusals counted %v, want 4 origin and 3 content_type", refused)
	}
	mu.Unlock()
	// Had any forged send been delivered, alice would get it first.
	if st, code := call("POST", "/api/send", `{"user":"alice","data":"from the backend"}`, "application/json", ""); st != 200 {
		t.Fatalf("backend's send: %d %s", st, code)
	}
	if st, code := call("POST", "/api/send", `{"user":"alice","data":"from the app page"}`, "application/json", "https://app.example"); st != 200 {
		t.Fatalf("allowed page's send: %d %s", st, code)
	}
	if got := recv(t, alice); got != "from the backend" {
		t.Fatalf("alice got %q first, want the backend's message", got)
	}
	if got := recv(t, alice); got != "from the app page" {
		t.Fatalf("alice got %q second", got)
	}
}
