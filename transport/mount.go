package transport

import (
	"net/http"
	"strings"
)

// KeepPaths sends every request under one of hs's prefixes straight to
// that service and everything else to next. Use it around an
// http.ServeMux: ServeMux redirects a path that is not clean
// ("/echo//" to "/echo/"), where the protocol wants the service to answer
// 404, and it never gets the chance.
//
//	mux := http.NewServeMux()
//	mux.Handle("/echo/", echo)
//	mux.Handle("/", site)
//	err := http.ListenAndServe(addr, transport.KeepPaths(mux, echo))
//
// gorilla/mux needs no wrapper: set SkipClean(true) and use Mount.
func KeepPaths(next http.Handler, hs ...*Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range hs {
			if p := r.URL.Path; p == h.prefix || strings.HasPrefix(p, h.prefix+"/") {
				h.ServeHTTP(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
