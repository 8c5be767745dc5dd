package web

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

var (
	// What hub-client.js offers: public methods, options it reads, and
	// the properties it sets on the hub.
	jsMethod = regexp.MustCompile(`Hub\.prototype\.([a-z]\w*) = function`)
	jsOption = regexp.MustCompile(`\bopts\.(\w+)|this\._opts\.(\w+)`)
	jsProp   = regexp.MustCompile(`(?:this|self)\.([a-z]\w*) = `)
	// What docs/hub.md's section on it documents: rows of its two tables.
	docOption = regexp.MustCompile("(?m)^\\| `(\\w+)` \\|")
	docMember = regexp.MustCompile("(?m)^\\| `hub\\.(\\w+)(\\(|`)")
	// What the example page uses.
	pageCall   = regexp.MustCompile(`\bhub\.(\w+)\(`)
	pageOption = regexp.MustCompile(`(?m)^\s+(\w+): `)
	pageScript = regexp.MustCompile(`<script src="(/[^"]+)"`)
)

func set(re *regexp.Regexp, s string) map[string]bool {
	out := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		for _, g := range m[1:] {
			if g != "" && g != "(" && g != "`" {
				out[g] = true
			}
		}
	}
	return out
}

func keys(m map[string]bool) string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}

func read(t *testing.T, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{repoRoot(t)}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHubClientDocumented: docs/hub.md documents exactly the options,
// methods and properties hub-client.js has, and examples/hub/index.html
// uses only documented ones and loads scripts the server serves.
func TestHubClientDocumented(t *testing.T) {
	js := read(t, DefaultDir, "public", "hub-client.js")
	doc := read(t, "docs", "hub.md")
	i := strings.Index(doc, "## The browser client: `hub-client.js`")
	if i < 0 {
		t.Fatal("docs/hub.md has no section on hub-client.js")
	}
	doc = doc[i:]
	if j := strings.Index(doc[3:], "\n## "); j >= 0 {
		doc = doc[:j+3]
	}

	methods, options := set(jsMethod, js), set(jsOption, js)
	members := set(jsProp, js)
	for m := range methods {
		members[m] = true
	}
	if len(methods) < 4 || len(options) < 8 || !members["channels"] || !members["transport"] {
		t.Fatalf("read too little from hub-client.js: methods %s; options %s; members %s", keys(methods), keys(options), keys(members))
	}
	docOpts, docMembers := set(docOption, doc), set(docMember, doc)
	for o := range options {
		if !docOpts[o] {
			t.Errorf("hub-client.js reads the option %s, which docs/hub.md does not document", o)
		}
	}
	for o := range docOpts {
		if !options[o] {
			t.Errorf("docs/hub.md documents the option %s, which hub-client.js does not read", o)
		}
	}
	for m := range members {
		if !docMembers[m] {
			t.Errorf("hub-client.js has hub.%s, which docs/hub.md does not document", m)
		}
	}
	for m := range docMembers {
		if !members[m] {
			t.Errorf("docs/hub.md documents hub.%s, which hub-client.js does not have", m)
		}
	}
	for _, want := range []string{"since", "epoch", `"recovered":false`, "onreset", "examples/hub/index.html"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/hub.md's section on hub-client.js does not mention %s", want)
		}
	}

	page := read(t, "examples", "hub", "index.html")
	i = strings.Index(page, "SockJSHub.connect({")
	j := strings.Index(page[max(i, 0):], "});")
	if i < 0 || j < 0 {
		t.Fatal("examples/hub/index.html does not call SockJSHub.connect({...})")
	}
	for o := range set(pageOption, page[i:i+j]) {
		if !options[o] {
			t.Errorf("examples/hub/index.html passes the option %s, which hub-client.js does not read", o)
		}
	}
	for m := range set(pageCall, page) {
		if !methods[m] {
			t.Errorf("examples/hub/index.html calls hub.%s, which hub-client.js does not have", m)
		}
	}

	// The scripts the page loads are the server's own.
	dir := filepath.Join(repoRoot(t), DefaultDir)
	testenv.NPMPackage(t, dir, "sockjs-client", "deps-client")
	s, _ := newServer(t, dir)
	scripts := set(pageScript, page)
	if !scripts["/hub-client.js"] || !scripts["/sockjsd.js"] {
		t.Errorf("examples/hub/index.html does not load /sockjsd.js and /hub-client.js: %s", keys(scripts))
	}
	for src := range scripts {
		if code, _, _ := get(t, s.URL+src); code != http.StatusOK {
			t.Errorf("examples/hub/index.html loads %s: %d", src, code)
		}
	}
}
