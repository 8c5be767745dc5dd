package transport_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/transport"
)

// TestIframeClient: the iframe page loads the application's URL as given
// (with its hash if the application gives one), else the service's own
// copy under its prefix (which it serves) with no hash, else the pinned
// CDN copy with its hash. TestIframePage checks the whole pages.
func TestIframeClient(t *testing.T) {
	script := []byte("/* a sockjs-client */")
	cases := []struct {
		name      string
		opts      transport.Options
		wantTag   string
		clientURL int // status of GET /echo/sockjs.min.js
	}{
		{"default CDN", transport.Options{},
			`<script src="` + transport.DefaultSockJSURL + `" integrity="` + transport.DefaultSockJSIntegrity + `" crossorigin="anonymous"></script>`, 404},
		{"own copy", transport.Options{ClientScript: script},
			`<script src="/echo/sockjs.min.js"></script>`, 200},
		{"application URL", transport.Options{SockJSURL: "/static/sockjs.js", ClientScript: script},
			`<script src="/static/sockjs.js"></script>`, 200},
		{"application URL and hash", transport.Options{SockJSURL: "/static/sockjs.js", SockJSIntegrity: "sha384-x"},
			`<script src="/static/sockjs.js" integrity="sha384-x" crossorigin="anonymous"></script>`, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := newSuiteServer(t, c.opts) + "/echo"
			if r := do(t, "GET", base+"/iframe.html", ""); r.code != 200 || !strings.Contains(r.body, c.wantTag) {
				t.Errorf("iframe page: %d, want the tag %s in:\n%s", r.code, c.wantTag, r.body)
			}
			r := do(t, "GET", base+"/sockjs.min.js", "")
			if r.code != c.clientURL {
				t.Fatalf("GET /echo/sockjs.min.js: %d, want %d", r.code, c.clientURL)
			}
			if r.code == 200 {
				if r.body != string(script) || !strings.Contains(r.get("Content-Type"), "javascript") || r.get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("client: %q %q", r.body, r.get("Content-Type"))
				}
				if r2 := do(t, "GET", base+"/sockjs.min.js", "", "If-None-Match", r.get("ETag")); r2.code != 304 {
					t.Errorf("revalidation: %d, want 304", r2.code)
				}
				if r2 := do(t, "POST", base+"/sockjs.min.js", ""); r2.code != 405 {
					t.Errorf("POST: %d, want 405", r2.code)
				}
			}
		})
	}
}

// TestPinnedIntegrity: DefaultSockJSIntegrity is the hash of the npm
// package's file, the same version the CDN URL names.
func TestPinnedIntegrity(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(t), "web", "sockjs-client")
	pkg := testenv.NPMPackage(t, dir, "sockjs-client", "deps-client")
	b, err := os.ReadFile(filepath.Join(pkg, "dist", "sockjs.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if got := transport.Integrity(b); got != transport.DefaultSockJSIntegrity {
		t.Errorf("npm sockjs.min.js is %s, DefaultSockJSIntegrity says %s", got, transport.DefaultSockJSIntegrity)
	}
	meta, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(meta), `"version": "1.6.1"`) || !strings.Contains(transport.DefaultSockJSURL, "@1.6.1/") {
		t.Errorf("the npm package and DefaultSockJSURL must name the same version")
	}
}
