// Package transport serves the SockJS protocol over HTTP: one service under
// a URL prefix, every transport a SockJS client may pick (websocket, raw
// websocket, xhr-streaming, xhr-polling, eventsource, htmlfile,
// jsonp-polling, and the iframe page the cross-domain ones need), all ending
// in the same *session.Session.
//
// New builds a Handler for a prefix and an application function; the
// function runs once per session, on its own goroutine, and sees one API
// whatever transport the client got (see package session). A Handler is an
// http.Handler for everything under its prefix. Mount it on a gorilla/mux
// router with Handler.Mount (the router needs SkipClean(true)), or register
// it on an http.ServeMux and wrap the mux in KeepPaths: the protocol has
// URLs such as "/echo//" that must answer 404, which both routers would
// otherwise clean up and redirect.
//
//	echo := transport.New("/echo", transport.Options{}, func(s *session.Session) {
//		s.OnMessage(func(msg string) { _ = s.Send(msg) })
//	})
//	mux := http.NewServeMux()
//	mux.Handle("/echo/", echo)
//	log.Fatal(http.ListenAndServe(addr, transport.KeepPaths(mux, echo)))
//
// Handler.Shutdown closes every session with 1001 and waits for the close
// frames to reach connected clients. Call it alongside
// http.Server.Shutdown, not after it: the server's Shutdown neither closes
// websocket and streaming connections (taken over from net/http) nor ends a
// poll that waits for data, and both end when their session closes.
//
// # Options and limits
//
// Options configure a service: which transports it offers (DisableWebSocket,
// AllowedOrigins and AllowIframeTransports; fallback.Policy is what /info
// tells clients), the session bounds (Options.Session), and what one client
// may make the server hold: MaxSessions, MaxMessageBytes,
// MaxConcurrentSends, BodyBudget, ResponseLimit, MaxRequestInfoBytes. Every
// zero value means the default documented next to the field. Each refusal
// answers with a status or a close code that says which limit it was, and
// is reported to session.Options.Observer.LimitHit.
//
// Sessions never see the cookies of their request unless ExposeCookies is
// set, because the iframe transports would make cookie authentication a
// cross-site request forgery hole: pass a token in the query string or the
// first message, and read it from Session.Request.
//
// # Round trips and cluster mode
//
// PingInterval pings every session on every transport, for pages that use
// sockjsd.js; the round trips go to an Observer that implements
// RTTObserver, and websocket ping frames' round trips to one that
// implements WebSocketRTTObserver. Options.Cluster (package cluster)
// serves one service from several nodes without sticky sessions.
//
// The README (the library, limits, close codes), docs/limits.md,
// docs/protocol.md and docs/browser.md say more.
package transport
