package browser

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// screenshotDir is where the layout test leaves its screenshots:
// $SOCKJSD_SCREENSHOTS, or sockjsd-screenshots in the temporary directory.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("SOCKJSD_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "sockjsd-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// overflowJS lists what is wider than its box: the document, each panel,
// and any button or field whose right edge is past the viewport.
const overflowJS = `(function () {
	var bad = [], d = document.documentElement, w = window.innerWidth;
	if (d.scrollWidth > d.clientWidth) { bad.push("document " + d.scrollWidth + " > " + d.clientWidth); }
	document.querySelectorAll(".panel").forEach(function (p) {
		if (p.scrollWidth > p.clientWidth) { bad.push("panel #" + p.id + " " + p.scrollWidth + " > " + p.clientWidth); }
	});
	document.querySelectorAll("button, input, select").forEach(function (e) {
		var r = e.getBoundingClientRect();
		if (r.width > 0 && r.right > w + 0.5) { bad.push((e.id || e.tagName) + " ends at " + Math.round(r.right) + " > " + w); }
	});
	return bad;
})()`

// testLayout: the demo page at a phone's 390 px, a small laptop's 920 px
// (two narrow columns) and a laptop's 1280 px,
// in use (an echo session with a full log, the all-transports grid, a hub
// session): nothing overflows sideways, the logs keep 100 lines and
// scroll inside their box, the hub's transport is locked once joined and
// shows its ping round trip. Screenshots are left for a person to look at.
func testLayout(t *testing.T, b *browser) {
	s := startServer(t, serverConfig{})
	dir := screenshotDir(t)
	for _, vp := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{
		{"390px", 390, 844, true},
		{"920px", 920, 800, false}, // the narrowest two-column layout
		{"1280px", 1280, 800, false},
	} {
		t.Run(vp.name, func(t *testing.T) {
			p := b.open(t, "about:blank")
			p.t = t
			opts := []chromedp.EmulateViewportOption{}
			if vp.mobile {
				opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
			}
			do(t, p, chromedp.EmulateViewport(vp.width, vp.height, opts...), chromedp.Navigate(s.URL()+"/"))

			// An echo session whose log overflows its 100 lines.
			do(t, p, chromedp.SetValue(chromedp.ID("transport"), "websocket"), chromedp.Click(chromedp.ID("connect")))
			waitFor[bool](t, p, `document.getElementById("in-use").textContent === "websocket"`)
			if dis := mustEval[bool](p, stepTimeout, `document.getElementById("transport").disabled`); !dis {
				t.Error("the echo transport selector is enabled while connected")
			}
			for i := 1; i <= 6; i++ {
				do(t, p, chromedp.Click(chromedp.ID("burst")))
				waitFor[bool](t, p, `document.querySelector('#echo-stats-rows tr[data-transport="websocket"] .n') &&
					document.querySelector('#echo-stats-rows tr[data-transport="websocket"] .n').textContent === "`+strconv.Itoa(20*i)+`"`)
			}
			if n := mustEval[int](p, stepTimeout, `document.querySelectorAll("#log tr").length`); n != 100 {
				t.Errorf("echo log has %d rows after 120 messages, want 100", n)
			}
			box := mustEval[[]int](p, stepTimeout, `(function () { var b = document.querySelector("#echo .log-box"); return [b.clientHeight, b.scrollHeight]; })()`)
			if box[0] > 300 || box[1] <= box[0] {
				t.Errorf("echo log box %d px high for %d px of rows: it should scroll within a fixed height", box[0], box[1])
			}

			// Every transport at once, and a hub session (on websocket: the
			// page already holds most of the 6 HTTP connections a host gets).
			do(t, p, chromedp.Click(chromedp.ID("all-start")))
			waitFor[bool](t, p, `document.querySelectorAll("#all-rows tr").length === 9`)
			do(t, p, chromedp.SetValue(chromedp.ID("hub-transport"), "websocket"), chromedp.Click(chromedp.ID("hub-connect")))
			waitFor[bool](t, p, `document.getElementById("hub-transport-used").textContent === "websocket" &&
				/ ms$/.test(document.getElementById("hub-rtt").textContent)`)
			locked := mustEval[[]bool](p, stepTimeout, `["hub-transport", "hub-channel", "hub-connect"].map(function (id) { return document.getElementById(id).disabled; })`)
			for i, id := range []string{"hub-transport", "hub-channel", "hub-connect"} {
				if !locked[i] {
					t.Errorf("#%s is enabled after Join", id)
				}
			}
			if host := mustEval[string](p, stepTimeout, `document.querySelector("#hub-curl .host").textContent`); host != s.Addr() {
				t.Errorf("curl hint names %q, want this server %q", host, s.Addr())
			}

			if bad := mustEval[[]string](p, stepTimeout, overflowJS); len(bad) > 0 {
				t.Errorf("overflows at %s: %s", vp.name, strings.Join(bad, "; "))
			}
			// What the grid shows depends on the machine (a loaded one
			// connects in seconds) and on how sessions end: the widest
			// values a cell can take must fit too.
			if bad := mustEval[[]string](p, stepTimeout, `(function () {
				document.querySelectorAll("#all-rows tr").forEach(function (tr) {
					tr.cells[0].textContent = "iframe-xhr-polling";
					tr.cells[1].textContent = "closed (1006 Server lost session)";
					for (var i = 2; i < 6; i++) { tr.cells[i].textContent = "12345"; }
					tr.cells[6].textContent = "99999";
				});
				return `+overflowJS+`;
			})()`); len(bad) > 0 {
				t.Errorf("overflows at %s with the widest grid values: %s", vp.name, strings.Join(bad, "; "))
			}
			shot, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "demo-"+vp.name+".png")
			if err := os.WriteFile(path, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", path)
			do(t, p, chromedp.Click(chromedp.ID("all-stop")), chromedp.Click(chromedp.ID("hub-leave")), chromedp.Click(chromedp.ID("disconnect")))
		})
	}
}
