package transport

import (
	"strings"
	"testing"
)

// TestSplitPath4: splitPath4 agrees with strings.Split on every path.
func TestSplitPath4(t *testing.T) {
	for _, p := range []string{"", "/", "//", "///", "////", "/a/b/c", "/a/b/c/", "a/b/c/d", "/a//c", "/000/abc/xhr",
		"/000/abc/xhr_send", "x/a/b/c", "/a/b", "/a/b/c/d/e", "/a.b/c/xhr"} {
		want := strings.Split(p, "/")
		got, ok := splitPath4(p)
		if ok != (len(want) == 4) {
			t.Errorf("splitPath4(%q): ok %v, strings.Split has %d parts", p, ok, len(want))
			continue
		}
		if ok && got != [4]string(want) {
			t.Errorf("splitPath4(%q) = %q, want %q", p, got, want)
		}
	}
}
