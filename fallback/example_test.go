package fallback_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sockjsd/sockjsd/fallback"
)

// Info is the body of GET <prefix>/info: what a client needs to pick its
// transports, and fresh entropy for its id generator (a different number
// on every call).
func ExampleInfo() {
	body := fallback.Info(fallback.Policy{WebSocket: false, CookieNeeded: true})
	var info map[string]any
	if err := json.Unmarshal(body, &info); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("websocket:", info["websocket"])
	fmt.Println("cookie_needed:", info["cookie_needed"])
	fmt.Println("origins:", info["origins"])
	_, hasEntropy := info["entropy"].(float64)
	fmt.Println("entropy:", hasEntropy)
	// Output:
	// websocket: false
	// cookie_needed: true
	// origins: [*:*]
	// entropy: true
}

// A Policy decides what a service offers. Under an origin allowlist the
// iframe transports are off unless asked for, because the requests they
// make carry no trustworthy Origin.
func ExamplePolicy() {
	open := fallback.Policy{WebSocket: true, RawWebSocket: true, IframeTransports: true}
	strict := fallback.Policy{WebSocket: true}
	fmt.Println(open.Transports())
	fmt.Println(strict.Transports())
	fmt.Println(open.Offers("jsonp"), strict.Offers("jsonp"), strict.Offers("xhr_streaming"))
	// Output:
	// [websocket xhr-streaming eventsource iframe-eventsource iframe-htmlfile xhr-polling iframe-xhr-polling jsonp-polling]
	// [websocket xhr-streaming eventsource xhr-polling]
	// true false true
}

// The iframe page loads sockjs-client from the URL given, which must be
// the client version the application's page uses. It is cached for a year
// and answered 304 when the browser already has it.
func ExampleNewIframePage() {
	page := fallback.NewIframePage("/echo/sockjs.min.js")
	fmt.Println(strings.Contains(string(page.Body), `<script src="/echo/sockjs.min.js"></script>`))

	serve := func(etag string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, "/echo/iframe.html", nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		rec := httptest.NewRecorder()
		page.Serve(rec, req)
		return rec.Result()
	}
	res := serve("")
	fmt.Println(res.StatusCode, res.Header.Get("Cache-Control"))
	res = serve(res.Header.Get("ETag"))
	fmt.Println(res.StatusCode)
	// Output:
	// true
	// 200 public, max-age=31536000
	// 304
}

// A copy of sockjs-client on a CDN is pinned by its Subresource Integrity
// hash, so that the page runs it only if it is byte for byte the expected
// one.
func ExampleNewIframePageIntegrity() {
	page := fallback.NewIframePageIntegrity("https://cdn.example.com/sockjs.min.js", "sha384-abc")
	fmt.Println(strings.Contains(string(page.Body),
		`<script src="https://cdn.example.com/sockjs.min.js" integrity="sha384-abc" crossorigin="anonymous"></script>`))
	// Output:
	// true
}
