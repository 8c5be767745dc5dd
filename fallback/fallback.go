package fallback

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Policy says which transports a service offers.
type Policy struct {
	// WebSocket offers /websocket (and tells clients so in /info).
	WebSocket bool
	// RawWebSocket offers <prefix>/websocket without SockJS framing.
	RawWebSocket bool
	// IframeTransports offers the transports that carry no trustworthy
	// Origin: htmlfile, jsonp and the iframe page (which the client's
	// iframe-* transports need). They are always offered when origins are
	// not restricted; with an origin allowlist they are off unless this
	// is set.
	IframeTransports bool
	// CookieNeeded tells clients that a JSESSIONID cookie is set for
	// sticky load balancing.
	CookieNeeded bool
}

// Offers reports whether the policy serves a session endpoint (the last
// path element: "xhr", "websocket", "jsonp", …).
func (p Policy) Offers(endpoint string) bool {
	switch endpoint {
	case "websocket":
		return p.WebSocket
	case "htmlfile", "jsonp", "jsonp_send":
		return p.IframeTransports
	case "xhr", "xhr_send", "xhr_streaming", "eventsource":
		return true
	}
	return false
}

// Transports lists the sockjs-client transport names the policy lets a
// client use, in the client's order of preference.
func (p Policy) Transports() []string {
	var t []string
	if p.WebSocket {
		t = append(t, "websocket")
	}
	t = append(t, "xhr-streaming", "eventsource")
	if p.IframeTransports {
		t = append(t, "iframe-eventsource", "iframe-htmlfile")
	}
	t = append(t, "xhr-polling")
	if p.IframeTransports {
		t = append(t, "iframe-xhr-polling", "jsonp-polling")
	}
	return t
}

type infoDoc struct {
	WebSocket    bool     `json:"websocket"`
	CookieNeeded bool     `json:"cookie_needed"`
	Origins      []string `json:"origins"`
	Entropy      uint32   `json:"entropy"`
}

var anyOrigin = []string{"*:*"}

// Info returns the body of /info: the capabilities the client needs to pick
// a transport, and fresh crypto-random entropy for its id generator.
// `origins` is always ["*:*"]: clients ignore it and the protocol's suite
// requires that value; the real origin check is done per request.
func Info(p Policy) []byte {
	var e [4]byte
	_, _ = rand.Read(e[:])
	b, _ := json.Marshal(infoDoc{
		WebSocket:    p.WebSocket,
		CookieNeeded: p.CookieNeeded,
		Origins:      anyOrigin,
		Entropy:      binary.BigEndian.Uint32(e[:]),
	})
	return b
}

// iframeName matches the page names the client may ask for:
// /iframe.html, /iframe-<version>.html; never with a '/' inside.
var iframeName = regexp.MustCompile(`^/iframe[0-9a-z._-]*\.html$`)

// IsIframePath reports whether p (relative to the service prefix) names the
// iframe page.
func IsIframePath(p string) bool { return iframeName.MatchString(p) }

// IframePage is the iframe page for one client URL, with its ETag.
type IframePage struct {
	Body []byte
	ETag string
}

// NewIframePage builds the page that loads the SockJS client from
// sockjsURL and bootstraps the iframe side of the iframe-* transports. The
// client URL must be the same client version the application page uses,
// or the client refuses it ("Incompatible SockJS!").
func NewIframePage(sockjsURL string) *IframePage {
	return NewIframePageIntegrity(sockjsURL, "")
}

// NewIframePageIntegrity is NewIframePage with a Subresource Integrity
// hash ("sha384-...") and crossorigin="anonymous" on the script tag, so a
// client loaded from a CDN runs only if it is byte for byte the pinned
// one. That is for a cross-origin copy only: the attributes make the page
// differ from the protocol's, which the official suite's IframePage tests
// reject. Empty integrity gives the protocol's exact page.
func NewIframePageIntegrity(sockjsURL, integrity string) *IframePage {
	attrs := ""
	if integrity != "" {
		attrs = ` integrity="` + html.EscapeString(integrity) + `" crossorigin="anonymous"`
	}
	body := `<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="` + html.EscapeString(sockjsURL) + `"` + attrs + `></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>`
	sum := sha256.Sum256([]byte(body))
	return &IframePage{Body: []byte(body), ETag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// Serve answers a GET for the page, with long-lived caching and 304 for a
// matching If-None-Match.
func (p *IframePage) Serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", CacheOneYear)
	h.Set("Expires", OneYearFromNow())
	h.Set("ETag", p.ETag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, p.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "text/html; charset=UTF-8")
	_, _ = w.Write(p.Body)
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == etag || t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// CacheOneYear is the Cache-Control value of long-cached answers (the
// iframe page and CORS preflights): the protocol asks for a year.
const CacheOneYear = "public, max-age=31536000"

// OneYearFromNow is the matching Expires header value.
func OneYearFromNow() string {
	return time.Now().Add(365 * 24 * time.Hour).UTC().Format(http.TimeFormat)
}
