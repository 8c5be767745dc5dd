package browser

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// testHub: two pages of the demo's hub panel on different transports chat
// through a channel, and a backend publish reaches both.
func testHub(t *testing.T, b *browser) {
	s := startServer(t, serverConfig{})
	pages := map[string]*page{}
	for _, tr := range []string{"websocket", "xhr-polling"} {
		p := b.open(t, s.URL()+"/") // the demo page's hub panel
		p.t = t
		do(t, p,
			chromedp.SetValue(chromedp.ID("hub-transport"), tr),
			chromedp.SetValue(chromedp.ID("hub-channel"), "chat.e2e"),
			chromedp.SetValue(chromedp.ID("hub-name"), tr),
			chromedp.Click(chromedp.ID("hub-connect")))
		waitFor[bool](t, p, `document.getElementById("hub-transport-used").textContent === `+jsArg(tr)+
			` && document.getElementById("hub-log").textContent.indexOf("joined chat.e2e") >= 0`)
		pages[tr] = p
	}
	hasLine := func(text string) string {
		return `document.getElementById("hub-log").textContent.indexOf(` + jsArg(text) + `) >= 0`
	}
	// Each page says something; both see both lines.
	for tr, p := range pages {
		do(t, p, chromedp.SetValue(chromedp.ID("hub-text"), "hello from "+tr), chromedp.Click(chromedp.ID("hub-send")))
	}
	for _, p := range pages {
		waitFor[bool](t, p, hasLine("websocket: hello from websocket")+" && "+hasLine("xhr-polling: hello from xhr-polling"))
	}
	// A backend publishes through the API.
	res, err := http.Post(s.URL()+"/api/publish", "application/json", strings.NewReader(`{"channel":"chat.e2e","data":{"name":"backend","text":"deploy finished"}}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("publish: %d", res.StatusCode)
	}
	for _, p := range pages {
		waitFor[bool](t, p, hasLine("#3 backend: deploy finished"))
	}
}
