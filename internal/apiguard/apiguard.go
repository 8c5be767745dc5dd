// Package apiguard is the cross-site guard of sockjsd's HTTP APIs (the
// hub's /api and the gateway's /api): what a web page on another site can
// make a browser send is refused before the API reads anything.
package apiguard

import (
	"mime"
	"net/http"
	"strings"
)

// Reasons a request is refused.
const (
	// Origin: an Origin header not among the allowed origins.
	Origin = "origin"
	// ContentType: a POST whose Content-Type is not application/json, or
	// missing: the bodies a web page can send cross-site without a CORS
	// preflight.
	ContentType = "content_type"
)

// Origins is a parsed list of allowed origins: "https://app.example.com",
// "*" for any, "https://*.example.com" for the subdomains of one (any
// port, unless it names one).
type Origins struct {
	any      bool
	exact    map[string]bool
	suffixes [][2]string // scheme, ".example.com[:port]"
}

// NewOrigins parses list. An empty list allows no origin.
func NewOrigins(list []string) Origins {
	o := Origins{exact: map[string]bool{}}
	for _, s := range list {
		s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "/")
		if scheme, host, ok := strings.Cut(s, "://*."); ok {
			o.suffixes = append(o.suffixes, [2]string{scheme, "." + host})
		} else if s != "" {
			o.any = o.any || s == "*"
			o.exact[s] = true
		}
	}
	return o
}

// Allows reports whether a request with this Origin header value may
// proceed.
func (o Origins) Allows(origin string) bool {
	origin = strings.ToLower(origin)
	if o.any || o.exact[origin] {
		return true
	}
	scheme, host, ok := strings.Cut(origin, "://")
	if !ok || strings.ContainsAny(host, "/@") {
		return false
	}
	for _, s := range o.suffixes {
		h := host
		if !strings.Contains(s[1], ":") {
			h, _, _ = strings.Cut(host, ":")
		}
		if scheme == s[0] && strings.HasSuffix(h, s[1]) {
			return true
		}
	}
	return false
}

// Refusal is why a request was refused and how to answer it.
type Refusal struct {
	Reason  string // Origin or ContentType
	Status  int    // 403 or 415
	Code    string // the API's error code
	Message string
}

// Check refuses a request that carries an Origin header o does not allow
// (backends send none; a browser always does on a cross-site POST), then a
// POST whose body is not application/json, which a browser sends
// cross-site only after a preflight the APIs never answer. It returns nil
// for a request that may proceed.
func Check(r *http.Request, o Origins) *Refusal {
	if v, ok := r.Header["Origin"]; ok && (len(v) != 1 || !o.Allows(v[0])) {
		return &Refusal{Origin, http.StatusForbidden, "forbidden_origin", "requests from web pages of this origin are refused (-allowed-origins)"}
	}
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return &Refusal{ContentType, http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json"}
		}
	}
	return nil
}
