package browser

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// testDemo uses the demo page at / as a person would: connect over a
// chosen transport, send, disconnect, then run every transport at once.
func testDemo(t *testing.T, b *browser) {
	s := startServer(t, serverConfig{})
	p := b.open(t, s.URL()+"/")

	if ok := mustEval[bool](p, stepTimeout, `typeof SockJS === "function" && typeof SockJSD === "object"`); !ok {
		t.Fatal("the demo page did not load sockjs-client and sockjsd.js")
	}
	if ok := mustEval[bool](p, stepTimeout, `!!document.getElementById("hub-connect") && typeof SockJSHub === "object"`); !ok {
		t.Error("the demo page has no hub panel")
	}

	t.Run("echo", func(t *testing.T) {
		p.t = t
		do(t, p, chromedp.SetValue(chromedp.ID("transport"), "xhr-polling"), chromedp.Click(chromedp.ID("connect")))
		waitFor[bool](t, p, `document.getElementById("in-use").textContent === "xhr-polling"`)
		if ct := mustEval[string](p, stepTimeout, `document.getElementById("connect-time").textContent`); !strings.HasSuffix(ct, " ms") {
			t.Errorf("connect time shows %q", ct)
		}
		do(t, p, chromedp.Click(chromedp.ID("burst")))
		// 20 rows, each with its round trip filled in by its echo.
		waitFor[bool](t, p, `(function () {
			var rows = document.querySelectorAll("#log tr");
			if (rows.length !== 20) { return false; }
			for (var i = 0; i < rows.length; i++) {
				if (!/ ms$/.test(rows[i].querySelector(".rtt").textContent)) { return false; }
			}
			return true;
		})()`)
		// p50/p95 of this transport, from the same 20 echoes, and the
		// round trip the server measured with its ping.
		stats := waitFor[[]string](t, p, `(function () {
			var r = document.querySelector('#echo-stats-rows tr[data-transport="xhr-polling"]');
			var ping = document.getElementById("echo-ping").textContent;
			if (!r || r.cells[1].textContent !== "20" || !/ ms$/.test(ping)) { return null; }
			return [r.cells[2].textContent, r.cells[3].textContent, ping];
		})()`)
		for _, v := range stats {
			if !strings.HasSuffix(v, " ms") {
				t.Errorf("echo panel stats %q", stats)
			}
		}
		t.Logf("echo panel, xhr-polling: p50 %s, p95 %s, server-measured ping %s", stats[0], stats[1], stats[2])
		// The pings never reached the page: the log has the 20 echoes only.
		if n := mustEval[int](p, stepTimeout, `document.querySelectorAll("#log tr").length`); n != 20 {
			t.Errorf("log has %d rows, want 20", n)
		}
		if s.rtt.count("demo/xhr-polling") == 0 {
			t.Error("the server recorded no round trip for demo/xhr-polling")
		}
		do(t, p, chromedp.Click(chromedp.ID("disconnect")))
		waitFor[bool](t, p, `document.getElementById("state").textContent.indexOf("closed (1000") === 0`)
	})

	t.Run("every-transport-at-once", func(t *testing.T) {
		p.t = t
		do(t, p, chromedp.Click(chromedp.ID("all-start")))
		// Every transport open on itself and answering pings.
		rows := waitFor[[][]string](t, p, `(function () {
			var out = [], rows = document.querySelectorAll("#all-rows tr");
			if (rows.length !== 9) { return null; }
			for (var i = 0; i < rows.length; i++) {
				var c = rows[i].cells;
				if (c[1].textContent !== "open" || +c[6].textContent < 2) { return null; }
				out.push([c[0].textContent, c[2].textContent, c[4].textContent, c[5].textContent]);
			}
			return out;
		})()`)
		var b strings.Builder
		b.WriteString("demo page, every transport at once (transport, connect, p50, p95):\n")
		for _, r := range rows {
			b.WriteString("  " + strings.Join(r, "\t") + "\n")
		}
		t.Log(b.String())
		do(t, p, chromedp.Click(chromedp.ID("all-stop")))
	})
}

// do runs actions on the page with a deadline.
func do(t *testing.T, p *page, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits, on every DOM change, until the expression is truthy and
// returns its value.
func waitFor[T any](t *testing.T, p *page, expr string) T {
	t.Helper()
	const d = 60 * time.Second
	ctx, cancel := context.WithTimeout(p.ctx, d+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(d)))
	if err != nil {
		t.Fatalf("waiting for %s: %v", abbrev(strings.Join(strings.Fields(expr), " ")), err)
	}
	return v
}
