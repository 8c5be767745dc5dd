// Package fallback holds what makes transport fallback work before a
// session exists: the /info document a client reads to pick its
// transports, the iframe page that the cross-domain transports load, and
// the Policy of which transports a service offers.
//
// A SockJS client starts every connection with GET <prefix>/info. The
// answer (Info) says whether websocket is offered and whether a cookie is
// needed for sticky load balancing; the client then tries its transports in
// order, skipping those the answer rules out. Policy is the one place that
// decides what a service offers, so that /info and the routes never
// disagree: Policy.Offers guards each session endpoint, and
// Policy.Transports lists the sockjs-client transport names it allows, in
// the client's order of preference (for a page's transports option).
//
// The iframe-* transports (for browsers whose cross-domain XHR is missing or
// broken) load <prefix>/iframe.html in a hidden frame on the server's
// origin. That page loads sockjs-client itself, so it must name the same
// client version the application's page uses; the client refuses another
// ("Incompatible SockJS!"). NewIframePage builds the protocol's exact page;
// NewIframePageIntegrity adds a Subresource Integrity hash, for a copy on a
// CDN. The page is cached for a year and answered 304 on a matching ETag.
//
// Package transport uses all of this: an application that mounts a
// transport.Handler does not call this package, and reads its service's
// Policy from Handler.Policy. docs/browser.md tells which transport a
// browser ends up on and why.
package fallback
