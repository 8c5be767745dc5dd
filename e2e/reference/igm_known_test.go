package reference

import "regexp"

// igmKnown: where igm/sockjs-go v3.0.2 differs from us. Almost all are
// places where igm also differs from sockjs-node and fails the protocol
// suite's assertions.
var igmKnown = []listed{
	{regexp.MustCompile(`Cache-Control$`), "igm's no-cache header lacks no-transform (the suite requires it)"},
	{regexp.MustCompile(`Vary$`), "igm sends no Vary: Origin on CORS answers"},
	{regexp.MustCompile(`Access-Control-Allow-Credentials$`), "igm allows credentials even when it answers * (no Origin), which browsers reject"},
	{regexp.MustCompile(`^(info|xhr) preflight #1 Access-Control-Allow-Origin$`), "igm answers * to Origin: null (the suite wants null)"},
	{regexp.MustCompile(`^(jsonp #\d|jsessionid #3|streaming transports #2) Access-Control-Allow-Origin$`), "igm adds CORS headers to jsonp and htmlfile answers, which are never read through CORS"},
	{regexp.MustCompile(`^iframe #\d Access-Control-Max-Age$`), "igm adds Access-Control-Max-Age to the iframe page"},
	{regexp.MustCompile(`^iframe #[01] body$`), "igm serves the old iframe page (the suite's current page loads the client before document.domain)"},
	{regexp.MustCompile(`^iframe #2 Etag$`), "igm's 304 omits the ETag (we repeat it, RFC 9110)"},
	{regexp.MustCompile(`^info #3 Set-Cookie$`), "igm sets JSESSIONID on /info (the suite forbids a cookie there)"},
	{regexp.MustCompile(`X-Content-Type-Options$`), "we mark JSONP script nosniff; igm sends nosniff only on its http.Error bodies"},
	{regexp.MustCompile(`^(jsessionid #3|jsonp #[024]) body$`), "igm omits /**/ before the JSONP callback (the suite requires it against content sniffing)"},
	{regexp.MustCompile(`^(jsonp #[5-9]|xhr polling #[34]) (status|body)$`), "igm answers bad payloads and callbacks 400 (the suite wants 500), with http.Error's trailing newline and its own wording"},
	{regexp.MustCompile(`^streaming transports #1 Content-Type$`), "igm sends text/event-stream; charset=UTF-8 (the suite wants text/event-stream)"},
	{regexp.MustCompile(`X-Accel-Buffering$`), "we send X-Accel-Buffering: no on streams; igm does not"},
	{regexp.MustCompile(`^streaming transports #2 body$`), "igm's htmlfile head differs in whitespace and padding"},
	{regexp.MustCompile(`^unicode #0 body$`), "igm sends U+200C-U+200F, U+2060-U+206F and U+FFF0-U+FFFF raw (the suite wants them \\u-escaped)"},
	{regexp.MustCompile(`^websocket #[0-3] (frames|messages)$`), "igm closes a websocket session on an empty frame (the suite says ignore it) and drops the connection without a close frame"},
	{regexp.MustCompile(`^wrong methods #3 `), "igm's 400 for a websocket request without Upgrade is gorilla's, with a Sec-WebSocket-Version header"},
	{regexp.MustCompile(`^xhr polling #6 body$`), "404 body wording (Go's http.NotFound; ours is sockjs-node's)"},
}

// igmRaces: where igm/sockjs-go v3.0.2 differs from us in some runs only.
var igmRaces = []listed{
	{regexp.MustCompile(`^close service #[12] body$`), "igm answers a poll that comes right after the previous one ended with c[2010,\"Another connection still open\"] when it has not detached the first yet (a race: some runs only); we answer the session's close frame"},
}
