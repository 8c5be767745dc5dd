package main

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/transport"
)

// serviceRoutes sends a request under a SockJS service's prefix straight
// to the service, ahead of the router. gorilla/mux runs every route's
// regexp in turn until one matches and then copies the request twice to
// store route variables that the services never read: on an xhr-polling
// echo that was about a tenth of the server's CPU (BenchmarkXHRPollingEcho
// profile), for the two requests of every message. Everything else goes
// to the router as before.
//
// A prefix is taken only when the router would send every path under it
// to the service anyway: no route registered before the service's own
// could match a path under the prefix (serviceRoutesFor checks the
// router's routes in order), so the answers are the router's, only
// cheaper.
type serviceRoutes struct {
	services []routedService // in the router's order
	next     http.Handler
}

type routedService struct {
	prefix string
	h      http.Handler
}

// serviceRoutesFor returns r with the services of hs that it routes
// unambiguously answered ahead of it.
func serviceRoutesFor(r *mux.Router, hs []*transport.Handler) http.Handler {
	sr := &serviceRoutes{next: r}
	for _, h := range hs {
		if routedFirst(r, h) {
			sr.services = append(sr.services, routedService{h.Prefix(), h})
		}
	}
	if len(sr.services) == 0 {
		return r
	}
	return sr
}

// routedFirst reports whether r sends every path under h's prefix to h:
// h is mounted on r, and no route before h's first one may match a path
// under the prefix. A route whose path cannot be read counts as one that
// may match anything.
func routedFirst(r *mux.Router, h *transport.Handler) bool {
	prefix := h.Prefix()
	found := false
	err := r.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if rt.GetHandler() == h {
			found = true
			return errWalkDone
		}
		tpl, err1 := rt.GetPathTemplate()
		re, err2 := rt.GetPathRegexp()
		if err1 != nil || err2 != nil || routeMayMatchUnder(tpl, strings.HasSuffix(re, "$"), prefix) {
			return errWalkDone
		}
		return nil
	})
	return found && errors.Is(err, errWalkDone)
}

// errWalkDone ends routedFirst's walk of the routes.
var errWalkDone = errors.New("walk done")

// routeMayMatchUnder reports whether a route with path template tpl (an
// exact Path route when exact, else a PathPrefix) may match prefix or a
// path under it. A template with variables is taken as the prefix before
// its first variable: it may match anything that starts with it.
func routeMayMatchUnder(tpl string, exact bool, prefix string) bool {
	lit, vars := tpl, false
	if i := strings.IndexByte(tpl, '{'); i >= 0 {
		lit, vars = tpl[:i], true
	}
	if exact && !vars {
		return lit == prefix || strings.HasPrefix(lit, prefix+"/")
	}
	return strings.HasPrefix(prefix, lit) || strings.HasPrefix(lit, prefix+"/")
}

func (sr *serviceRoutes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	for _, s := range sr.services {
		if rest, ok := strings.CutPrefix(p, s.prefix); ok && (rest == "" || rest[0] == '/') {
			s.h.ServeHTTP(w, r)
			return
		}
	}
	sr.next.ServeHTTP(w, r)
}
