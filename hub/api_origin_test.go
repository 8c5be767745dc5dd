package hub_test

import (
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/hub"
)

// TestAPICrossSite: what a web page on another site can send to the API
// is refused and counted, and its message never reaches history. Before
// the guard, with no API key, a "simple" CORS request (Origin:
// https://evil.example, Content-Type: text/plain) got 200 and its message
// went into history.
func TestAPICrossSite(t *testing.T) {
	var mu sync.Mutex
	refused := map[string]int{}
	for _, tc := range []struct {
		name    string
		allowed []string
	}{{"no allowlist", nil}, {"allowlist", []string{"https://app.example", "https://*.trusted.example"}}} {
		t.Run(tc.name, func(t *testing.T) {
			clear(refused)
			h := hub.New(hub.Options{})
			r := mux.NewRouter()
			hub.NewAPI(h, hub.APIOptions{AllowedOrigins: tc.allowed, Refused: func(reason string) {
				mu.Lock()
				refused[reason]++
				mu.Unlock()
			}}).Mount(r, "/api")
			srv := httptest.NewServer(r)
			defer srv.Close()
			body := `{"channel":"news","data":{"forged":true}}`
			for _, c := range []struct {
				name, method, ct, origin string
				status                   int
				errCode                  string
			}{
				{"evil page, text/plain", "POST", "text/plain", "https://evil.example", 403, "forbidden_origin"},
				{"evil page, JSON", "POST", "application/json", "https://evil.example", 403, "forbidden_origin"},
				{"evil page reading history", "GET", "", "https://evil.example", 403, "forbidden_origin"},
				{"null origin", "POST", "application/json", "null", 403, "forbidden_origin"},
				{"lookalike of an allowed origin", "POST", "application/json", "https://app.example.evil", 403, "forbidden_origin"},
				{"backend, text/plain", "POST", "text/plain", "", 415, "unsupported_media_type"},
				{"backend, form", "POST", "application/x-www-form-urlencoded", "", 415, "unsupported_media_type"},
				{"backend, no content type", "POST", "", "", 415, "unsupported_media_type"},
				{"backend, JSON lookalike", "POST", "application/jsonp", "", 415, "unsupported_media_type"},
			} {
				code, v := apiCall(t, c.method, srv.URL+"/api/publish", body, "Content-Type", c.ct, "Origin", c.origin)
				if c.method == "GET" {
					code, v = apiCall(t, c.method, srv.URL+"/api/history?channel=news", "", "Origin", c.origin)
				}
				if code != c.status || v["error"] != c.errCode {
					t.Errorf("%s: %d %v, want %d %s", c.name, code, v, c.status, c.errCode)
				}
			}
			mu.Lock()
			if refused[hub.RefusedOrigin] != 5 || refused[hub.RefusedContentType] != 4 {
				t.Errorf("refusals counted %v, want 5 origin and 4 content_type", refused)
			}
			mu.Unlock()
			// Nothing reached history: the backend's own publish is seq 1.
			if code, v := apiCall(t, "POST", srv.URL+"/api/publish", body, "Content-Type", "application/json; charset=utf-8"); code != 200 || jsonNum(v["seq"]) != "1" {
				t.Fatalf("backend publish: %d %v, want seq 1", code, v)
			}
			if tc.allowed == nil {
				return
			}
			for i, origin := range []string{"https://app.example", "HTTPS://App.Example", "https://a.trusted.example", "https://b.trusted.example:8443"} {
				code, v := apiCall(t, "POST", srv.URL+"/api/publish", body, "Origin", origin)
				if code != 200 || jsonNum(v["seq"]) != string(rune('2'+i)) {
					t.Errorf("allowed origin %s: %d %v", origin, code, v)
				}
			}
			if code, v := apiCall(t, "POST", srv.URL+"/api/publish", body, "Origin", "https://trusted.example"); code != 403 {
				t.Errorf("the wildcard's own domain: %d %v, want 403", code, v)
			}
		})
	}
}
