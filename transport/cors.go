package transport

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/sockjsd/sockjsd/fallback"
)

// originList is the parsed Options.AllowedOrigins.
type originList struct {
	any      bool
	exact    map[string]bool
	suffixes []originSuffix // "https://*.example.com"
}

type originSuffix struct{ scheme, suffix string }

func newOriginList(allowed []string) originList {
	l := originList{exact: map[string]bool{}}
	if len(allowed) == 0 {
		l.any = true
	}
	for _, o := range allowed {
		o = strings.TrimSpace(strings.ToLower(o))
		switch {
		case o == "*":
			l.any = true
		case strings.Contains(o, "://*."):
			scheme, host, _ := strings.Cut(o, "://*")
			l.suffixes = append(l.suffixes, originSuffix{scheme, host})
		case o != "":
			l.exact[strings.TrimSuffix(o, "/")] = true
		}
	}
	return l
}

// allows reports whether a request with this Origin header may proceed.
// Requests without an Origin (non-browser clients, same-origin GETs) are
// allowed: origin checks defend browsers against other sites' pages.
func (l originList) allows(origin string) bool {
	if l.any || origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	if l.exact[origin] {
		return true
	}
	if len(l.suffixes) > 0 {
		u, err := url.Parse(origin)
		if err != nil {
			return false
		}
		for _, s := range l.suffixes {
			// "https://*.example.com" allows any port; with a port
			// ("https://*.example.com:8443") only that one.
			host := u.Hostname()
			if strings.Contains(s.suffix, ":") {
				host = u.Host
			}
			if u.Scheme == s.scheme && strings.HasSuffix(host, s.suffix) && len(host) > len(s.suffix) {
				return true
			}
		}
	}
	return false
}

func (h *Handler) checkWebSocketOrigin(r *http.Request) bool {
	return h.origins.allows(r.Header.Get("Origin"))
}

// cors sets the CORS answer the protocol requires: the request's Origin
// echoed with credentials allowed ("null" included, for file:// pages), or
// "*" without credentials when there is no Origin. Under an allowlist, a
// request from another origin gets 403 and cors returns false.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if !h.origins.allows(origin) {
		h.log.Info("sockjs: origin refused", "prefix", h.prefix, "origin", origin)
		plainError(w, http.StatusForbidden, "Origin not allowed")
		return false
	}
	hd := w.Header()
	if origin != "" {
		hd["Access-Control-Allow-Origin"] = []string{origin}
		setHeader(hd, "Access-Control-Allow-Credentials", hdrTrue)
	} else {
		setHeader(hd, "Access-Control-Allow-Origin", hdrAnyOrigin)
	}
	setHeader(hd, "Vary", hdrVaryOrigin)
	return true
}

// preflight answers an OPTIONS request: 204, cacheable for a year.
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request, methods string) {
	if !h.cors(w, r) {
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", fallback.CacheOneYear)
	hd.Set("Expires", fallback.OneYearFromNow())
	setHeader(hd, "Access-Control-Max-Age", hdrMaxAgeOneYear)
	hd.Set("Access-Control-Allow-Methods", methods)
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
		hd.Set("Access-Control-Allow-Headers", rh)
	}
	h.setCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// noCache forbids caching: several transports fetch private data with GET,
// and iOS 6 caches POSTs.
func noCache(w http.ResponseWriter) {
	setHeader(w.Header(), "Cache-Control", hdrNoCache)
}

// setCookie sets JSESSIONID for load balancers that need it for sticky
// sessions, echoing the one the client has.
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request) {
	if !h.opts.CookieNeeded {
		return
	}
	v := "dummy"
	if c, err := r.Cookie("JSESSIONID"); err == nil && c.Value != "" {
		v = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: v, Path: "/"})
}
