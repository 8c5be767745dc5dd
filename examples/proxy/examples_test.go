// Package proxy_test runs the proxy examples' own tests, so that `go test
// ./...` (and `make test`) fails when a backend does: the Python backend's
// unittest and the Node backend's node --test. Each starts its backend as a
// process on a free loopback port with a fake sockjsd API beside it.
package proxy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// runTimeout bounds one language's whole suite (it takes about a second).
const runTimeout = 2 * time.Minute

// run runs name args in dir, in a process group of its own so that a
// timeout also ends the backend the suite started, and fails the test with
// the output when the command fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	out := &testenv.Buffer{}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	// Whatever the suite left behind (it stops its backend itself).
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not finish within %s:\n%s", name, strings.Join(args, " "), runTimeout, out)
	}
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	if testing.Verbose() {
		t.Logf("%s %s:\n%s", name, strings.Join(args, " "), out)
	}
}

func TestPythonBackend(t *testing.T) {
	testenv.SkipIfShort(t, "python3")
	python, err := exec.LookPath("python3")
	if err != nil {
		testenv.Missing(t, "python3 on PATH (Debian: apt-get install python3)")
	}
	// No __pycache__ in the source tree.
	run(t, "python", []string{"PYTHONDONTWRITEBYTECODE=1"}, python, "-m", "unittest", "-v", "test_backend")
}

func TestNodeBackend(t *testing.T) {
	node := testenv.Node(t)
	run(t, "node", nil, node, "--test", "backend.test.js")
}

// TestRunScript checks run.sh's syntax; it cannot run here, as it serves
// fixed ports until interrupted.
func TestRunScript(t *testing.T) {
	testenv.SkipIfShort(t, "bash")
	bash, err := exec.LookPath("bash")
	if err != nil {
		testenv.Missing(t, "bash on PATH")
	}
	run(t, ".", nil, bash, "-n", filepath.Join(".", "run.sh"))
}

// TestReadmeExcerpts: every python and js block of README.md is the
// backends' code verbatim, so that the signature check it shows is the one
// that runs.
func TestReadmeExcerpts(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{"python": "python/backend.py", "js": "node/backend.js"}
	seen := 0
	rest := string(readme)
	for {
		_, after, ok := strings.Cut(rest, "\n```")
		if !ok {
			break
		}
		lang, body, _ := strings.Cut(after, "\n")
		block, tail, ok := strings.Cut(body, "```")
		if !ok {
			t.Fatal("README.md: an unclosed code block")
		}
		rest = tail
		src, ok := sources[lang]
		if !ok {
			continue
		}
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(code), block) {
			t.Errorf("README.md shows a %s block that is not in %s verbatim:\n%s", lang, src, block)
		}
		seen++
	}
	if seen < 3 {
		t.Errorf("found %d python and js blocks in README.md, want at least 3", seen)
	}
}
