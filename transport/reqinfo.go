package transport

import (
	"github.com/sockjsd/sockjsd/internal/engine"
	"net/http"
	"net/url"
	"strings"

	"github.com/sockjsd/sockjsd/session"
)

// What a session keeps of the request that opened it. Whatever it keeps is
// multiplied by every session a client can open, so it keeps only the
// headers the application asked for (Options.KeepHeaders), the query and
// path, within Options.MaxRequestInfoBytes; past that the session is
// refused with 431 rather than silently given less than it asked for.

// DefaultKeepHeaders are the headers a session keeps unless
// Options.KeepHeaders says otherwise: the ones sockjs-node keeps (client
// address through proxies, user agent, language) and Origin.
func DefaultKeepHeaders() []string {
	return []string{
		"Referer", "User-Agent", "Accept-Language", "Origin",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip", "X-Client-Ip",
		"X-Cluster-Client-Ip", "Via", "X-Ssl", "Dnt",
	}
}

// keepList canonicalizes the allowlist once; Cookie joins it when cookies
// are exposed.
func keepList(o Options) []string {
	src := o.KeepHeaders
	if src == nil {
		src = DefaultKeepHeaders()
	}
	seen := make(map[string]bool, len(src)+1)
	var out []string
	for _, k := range src {
		k = http.CanonicalHeaderKey(strings.TrimSpace(k))
		if k != "" && !seen[k] && (k != "Cookie" || o.ExposeCookies) {
			seen[k] = true
			out = append(out, k)
		}
	}
	if o.ExposeCookies && !seen["Cookie"] {
		out = append(out, "Cookie")
	}
	return out
}

// requestInfoBytes is what requestInfo would keep, in bytes, computed
// without copying anything.
func (h *Handler) requestInfoBytes(r *http.Request) int {
	n := len(r.RemoteAddr) + len(r.Host) + len(r.URL.Path) + len(r.URL.RawQuery)
	for _, k := range h.keep {
		for _, v := range r.Header[k] {
			n += len(k) + len(v)
		}
	}
	return n
}

// refuseRequestInfo answers 431 when what a new session would keep is
// over the limit.
func (h *Handler) refuseRequestInfo(w http.ResponseWriter, r *http.Request, t session.Transport) bool {
	if h.requestInfoBytes(r) <= h.opts.MaxRequestInfoBytes {
		return false
	}
	h.limitHit(t, session.LimitRequestInfo)
	plainError(w, http.StatusRequestHeaderFieldsTooLarge, "Request headers and query kept by a session over limit")
	return true
}

// requestInfo copies what a session keeps, so that it pins none of the
// request's buffers.
func (h *Handler) requestInfo(r *http.Request) engine.Request {
	// No map when nothing is kept (engine's Request gives empty ones):
	// two empty maps are about 400 bytes of an idle session.
	var hdr http.Header
	for _, k := range h.keep {
		vs := r.Header[k]
		if len(vs) == 0 {
			continue
		}
		cp := make([]string, len(vs))
		for i, v := range vs {
			cp[i] = strings.Clone(v)
		}
		if hdr == nil {
			hdr = make(http.Header)
		}
		hdr[k] = cp
	}
	var q url.Values
	if r.URL.RawQuery != "" {
		// Parsed from a copy: the values alias it, not the request line.
		q, _ = url.ParseQuery(strings.Clone(r.URL.RawQuery))
	}
	return engine.Request{
		Header:     hdr,
		Query:      q,
		RemoteAddr: strings.Clone(r.RemoteAddr),
		Host:       strings.Clone(r.Host),
		Path:       strings.Clone(r.URL.Path),
	}
}
