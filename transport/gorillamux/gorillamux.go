// Package gorillamux mounts SockJS services on a gorilla/mux router. It is
// a package of its own so that an application serving transport.Handler
// on net/http's ServeMux (with transport.KeepPaths) does not link
// gorilla/mux.
package gorillamux

import (
	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/transport"
)

// Mount registers each service on r under its prefix: the prefix itself
// and everything below it. The protocol's URLs include ones like
// "<prefix>//" that must answer 404, so r should have SkipClean(true);
// otherwise mux redirects them.
func Mount(r *mux.Router, hs ...*transport.Handler) {
	for _, h := range hs {
		r.Path(h.Prefix()).Handler(h)
		r.PathPrefix(h.Prefix() + "/").Handler(h)
	}
}
