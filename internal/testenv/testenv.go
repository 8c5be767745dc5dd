// Package testenv holds what several test packages need to find on this
// machine: the repository's root, where the npm packages are installed,
// and the tools (node, Chromium) whose absence skips a test with a message
// naming what is missing. `go test -short ./...` needs only Go.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RepoRoot is the directory holding go.mod, found upwards from the test's
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// RequireAllEnv, when set (make test sets it), turns every skip for a
// missing tool into a failure, so that a full run cannot pass by skipping.
const RequireAllEnv = "SOCKJSD_TEST_ALL"

// Missing skips the test because what (a tool and how to get it) is not
// on this machine, or fails it when RequireAllEnv is set.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireAllEnv) != "" {
		t.Fatalf("%s is missing (%s is set, so nothing may be skipped)", what, RequireAllEnv)
	}
	t.Skipf("skipped: needs %s", what)
}

// SkipIfShort skips the test under -short, naming what it needs that a
// machine with only Go lacks.
func SkipIfShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped under -short: needs %s", what)
	}
}

// Node is the path of node, or the test is skipped (see Missing).
func Node(t testing.TB) string {
	t.Helper()
	SkipIfShort(t, "node")
	p, err := exec.LookPath("node")
	if err != nil {
		Missing(t, "node on PATH (Debian: apt-get install nodejs)")
	}
	return p
}

// ChromeEnv names a Chromium or Chrome binary to use instead of the one
// on PATH.
const ChromeEnv = "CHROME"

// chromeNames are the names Chromium and Chrome install under.
var chromeNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium is the browser for the browser tests: $CHROME, else the first
// of chromeNames on PATH, else the test is skipped (see Missing).
func Chromium(t testing.TB) string {
	t.Helper()
	SkipIfShort(t, "Chromium")
	if p := os.Getenv(ChromeEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("$%s=%s: %v", ChromeEnv, p, err)
		}
		return p
	}
	for _, n := range chromeNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, "Chromium on PATH or in $"+ChromeEnv+" (run `make deps-system`)")
	return ""
}

// NPMPackage is the directory of an npm package installed under dir's
// node_modules, or the test is skipped (see Missing) naming the make
// target that installs it.
func NPMPackage(t testing.TB, dir, pkg, makeTarget string) string {
	t.Helper()
	SkipIfShort(t, "the npm package "+pkg)
	p := filepath.Join(dir, "node_modules", pkg)
	if _, err := os.Stat(filepath.Join(p, "package.json")); err != nil {
		Missing(t, "the npm package "+pkg+" in "+dir+" (run `make "+makeTarget+"`)")
	}
	return p
}
