// Package web serves the browser side of sockjsd: sockjs-client (the npm
// package, pinned), sockjsd.js (our wrapper around it: reconnection,
// readyState, the service ping), hub-client.js (the hub's protocol on top)
// and the demo page. cmd/server and the browser tests mount the same
// handlers, so the tests exercise what users get.
//
// New builds a Site, an http.Handler for all of it: sockjs-client at
// ClientPath, our files at "/". Register it at "/" on an http.ServeMux, or
// call Mount on a gorilla/mux router after the SockJS services (there "/"
// matches every path, so order matters). Site.Client returns the sockjs-client bytes, to give to
// transport.Options.ClientScript: each service then serves the same copy to
// its iframe page, so the iframe transports never reach another host and
// the page is the protocol's exactly.
//
//	site := web.New("", nil)
//	echo := transport.New("/echo", transport.Options{ClientScript: site.Client()}, services.Echo)
//	mux := http.NewServeMux()
//	mux.Handle("/echo/", echo)
//	mux.Handle("/", site)
//	log.Fatal(http.ListenAndServe(addr, transport.KeepPaths(mux, echo)))
//
// Our own files are always built into the binary. The npm sockjs-client is
// built in only with the sockjsd_embed build tag, which `make build` sets
// after copying the installed npm file into web/clientdist/ (gitignored:
// no third-party file is committed). Without it Client returns nil, New logs
// once the command that fixes it (FixCommand), and the demo page and the
// iframe pages load the pinned CDN copy, checked by its Subresource
// Integrity hash. New's dir argument serves public/ and node_modules/ from
// a checkout instead, to edit the demo page without rebuilding.
//
// docs/browser.md describes sockjsd.js, the demo page, which transport a
// browser ends up on, and the browser tests.
package web
