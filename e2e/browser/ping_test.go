package browser

import (
	"fmt"
	"testing"
)

var sprintf = fmt.Sprintf

// pingTransports are the browser transports checked for the service ping,
// with the server-side transport their round trip is recorded under.
var pingTransports = []struct{ client, server string }{
	{"websocket", "websocket"},
	{"xhr-streaming", "xhr-streaming"},
	{"eventsource", "eventsource"},
	{"iframe-htmlfile", "htmlfile"},
	{"xhr-polling", "xhr-polling"},
	{"iframe-xhr-polling", "xhr-polling"},
	{"jsonp-polling", "jsonp-polling"},
}

// pingJS opens sockjsd.js on the demo's echo service over one transport,
// waits until it has answered pings (conn.rtt is set from the second one
// on), then echoes an ordinary message and a ping look-alike: the page
// must get exactly those two, never a ping.
const pingJS = `new Promise(function (resolve, reject) {
	var got = [], fake = "\u0000sockjsd-ping:not-the-nonce:1:5", rtts = 0, sent = false;
	var timer = setTimeout(function () { reject(new Error("timeout: got " + JSON.stringify(got) + ", rtts " + rtts)); }, 30000);
	var conn = SockJSD.connect({
		url: "/demo", transports: [%s], timeout: 10000,
		onrtt: function () {
			rtts++;
			if (rtts === 2 && !sent) { sent = true; conn.send("hello"); conn.send(fake); }
		},
		onmessage: function (m) {
			got.push(m);
			if (got.length === 2) {
				// The echoes can arrive before the send that carried
				// them has completed (jsonp-polling's form post reports
				// its end after the poll answered): bufferedAmount is
				// read once the sends are done, within the timer.
				var done = function () {
					if (conn.bufferedAmount !== 0) { setTimeout(done, 10); return; }
					clearTimeout(timer);
					var r = {got: got, rtt: conn.rtt, transport: conn.transport, readyState: conn.readyState, buffered: conn.bufferedAmount};
					conn.close();
					resolve(r);
				};
				done();
			}
		},
		onclose: function (e) { if (got.length < 2) { clearTimeout(timer); reject(new Error("closed " + e.code + " " + e.reason)); } }
	});
})`

// testServicePing: sockjsd.js answers the demo service's pings on every
// transport without passing them to the page, the server records the round
// trip under the service and transport, and an application message shaped
// like a ping still reaches the page.
func testServicePing(t *testing.T, b *browser) {
	s := startServer(t, serverConfig{})
	p := b.open(t, s.URL()+"/")
	for _, tr := range pingTransports {
		t.Run(tr.client, func(t *testing.T) {
			p.t = t
			before := s.rtt.count("demo/" + tr.server)
			type result struct {
				Got        []string
				RTT        float64
				Transport  string
				ReadyState int
				Buffered   int
			}
			r := mustEval[result](p, stepTimeout, sprintf(pingJS, jsArg(tr.client)))
			if len(r.Got) != 2 || r.Got[0] != "hello" || r.Got[1] != "\x00sockjsd-ping:not-the-nonce:1:5" {
				t.Errorf("page got %q, want the two echoes only", r.Got)
			}
			if r.Transport != tr.client || r.ReadyState != 1 || r.RTT <= 0 || r.Buffered != 0 {
				t.Errorf("connection: %+v", r)
			}
			if n := s.rtt.count("demo/" + tr.server); n < before+2 {
				t.Errorf("server recorded %d round trips for demo/%s, want at least 2 more", n-before, tr.server)
			}
			t.Logf("%s: round trip %.1f ms (server-measured)", tr.client, r.RTT)
		})
	}
}
