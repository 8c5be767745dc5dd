package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/metrics"
)

// The docs name metrics, flags and error codes; these tests hold them to
// the code. The documents are README.md and docs/*.md; docs/readme-*.md are
// drafts for README.md (one per branch) and are skipped.

type doc struct{ name, text string }

func docs(t *testing.T) []doc {
	t.Helper()
	root := testenv.RepoRoot(t)
	paths, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, filepath.Join(root, "README.md"))
	var out []doc
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), "readme-") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, doc{rel, string(b)})
	}
	if len(out) < 3 {
		t.Fatalf("found only %d documents", len(out))
	}
	return out
}

// expand turns "a_{x,y}_b" into a_x_b and a_y_b (one brace group).
func expand(s string) []string {
	i, j := strings.Index(s, "{"), strings.Index(s, "}")
	if i < 0 || j < i {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[i+1:j], ",") {
		out = append(out, s[:i]+alt+s[j+1:])
	}
	return out
}

var metricRef = regexp.MustCompile(`sockjs_[a-z_]*(\{[a-z,]+\}_[a-z_]*)?`) // a {a,b} group inside a name, not a label set after it

// docMetrics is every metric name a text mentions, series suffixes
// (_bucket, _sum, _count) taken off.
func docMetrics(text string) map[string]bool {
	out := map[string]bool{}
	for _, m := range metricRef.FindAllString(text, -1) {
		for _, n := range expand(m) {
			n = strings.TrimRight(n, "_")
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, suf)
			}
			out[n] = true
		}
	}
	return out
}

// descRecorder is a prometheus.Registerer that keeps the names of what is
// registered on it.
type descRecorder struct{ names []string }

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// serverMetrics is every metric cmd/server can serve: metrics.Names() and
// what cluster mode and the hub register on the server's registry.
func serverMetrics(t *testing.T) map[string]bool {
	t.Helper()
	have := map[string]bool{}
	for _, n := range metrics.Names() {
		have[n] = true
	}
	cfg, err := parseConfig([]string{"-client-dir", t.TempDir(), "-addr", "127.0.0.1:8081",
		"-redis", "redis://127.0.0.1:1/0", "-cluster-secret", "docs-test"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &descRecorder{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := cfg.transportOptions()
	if _, err := setupCluster(cfg, &opts, rec, log); err != nil { // connects lazily: no Redis needed
		t.Fatal(err)
	}
	cfg.RedisURL = "" // the hub registers the same metrics on either broker; the memory one needs no Redis
	hm, err := mountHub(mux.NewRouter(), cfg, opts, metrics.New(rec), rec, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := hm.Close(); err != nil {
		t.Fatal(err)
	}
	// The gateway's metrics, with webhooks (in memory: no Redis needed).
	cfg.Proxy.Services = multiFlag{"/app=http://127.0.0.1:1/app"}
	cfg.Proxy.Secret, cfg.Proxy.Webhook = "docs-test", "http://127.0.0.1:1/webhook"
	px, err := mountProxy(mux.NewRouter(), cfg, opts, hm, rec, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	connLimiter(cfg.Conns, nil, rec) // the listener's
	tlsMetrics(t, rec)               // -tls-cert's (tls_test.go)
	for _, n := range rec.names {
		have[n] = true
	}
	return have
}

// TestDocsMetrics: every metric the docs name exists, and docs/metrics.md
// describes every metric there is.
func TestDocsMetrics(t *testing.T) {
	have := serverMetrics(t)
	for _, d := range docs(t) {
		for n := range docMetrics(d.text) {
			if !have[n] {
				t.Errorf("%s names the metric %s, which does not exist", d.name, n)
			}
		}
		if d.name == filepath.Join("docs", "metrics.md") {
			described := docMetrics(d.text)
			for n := range have {
				if !described[n] {
					t.Errorf("docs/metrics.md does not describe %s", n)
				}
			}
		}
	}
}

var (
	flagRef  = regexp.MustCompile("`(-[a-z][a-z0-9-]*)")
	flagDecl = regexp.MustCompile(`(?:flag|fs)\.\w+\((?:&[\w.]+,\s*)?"([a-z][a-z0-9-]*)"`)
)

// otherFlags are the flags of the repository's other commands (parsed from
// their source) and of the go tool, which the docs also show.
func otherFlags(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, f := range []string{"race", "count", "run", "v", "short", "timeout", "fuzz", "bench", "benchmem", "tags", "json", "cpu"} {
		out["-"+f] = true
	}
	root := testenv.RepoRoot(t)
	// The bench servers (bench/servers/*) are commands too: docs/bench.md
	// shows their flags.
	dirs := []string{"cmd/loadgen", "bench/cmd/benchrun"}
	servers, _ := filepath.Glob(filepath.Join(root, "bench", "servers", "*"))
	for _, s := range servers {
		rel, _ := filepath.Rel(root, s)
		dirs = append(dirs, rel)
	}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range flagDecl.FindAllStringSubmatch(string(b), -1) {
				out["-"+m[1]] = true
			}
		}
	}
	return out
}

// TestDocsFlags: every flag the docs name exists, and every server flag
// is documented (README.md or docs/*.md).
func TestDocsFlags(t *testing.T) {
	server := map[string]bool{}
	for _, f := range allFlags(t) {
		server["-"+f.Name] = true
	}
	other := otherFlags(t)
	documented := map[string]bool{}
	for _, d := range docs(t) {
		for _, m := range flagRef.FindAllStringSubmatch(d.text, -1) {
			documented[m[1]] = true
			if !server[m[1]] && !other[m[1]] {
				t.Errorf("%s names the flag %s, which no command has", d.name, m[1])
			}
		}
	}
	var missing []string
	for f := range server {
		if !documented[f] {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	for _, f := range missing {
		t.Errorf("the server flag %s is not documented in README.md or docs/*.md", f)
	}
}

var (
	// Close codes: table rows of a table headed "code", c[NNNN, and
	// `NNNN "reason"`.
	closeRow   = regexp.MustCompile(`(?m)^\| (\d{4}) \|`)
	closeFrame = regexp.MustCompile("c\\[(\\d{4}),|`(\\d{4}) \"")
	codeDecl   = regexp.MustCompile(`Code\w*\s*=\s*(\d{4})\b|CloseMessage\w*|Close\w+\s*=\s*(\d{4})`)
	// Hub and API error codes: backticked snake_case words on lines about
	// errors.
	errWord    = regexp.MustCompile("`([a-z]+(?:_[a-z]+)*)`")
	errDecl    = regexp.MustCompile(`Code\w*\s*=\s*"([a-z_]+)"|[Ff]ail\([^,]+,[^,]+,\s*"([a-z_]+)"`)
	errorsLine = regexp.MustCompile(`(?i)error codes|errors are json`)
)

// codesInSource collects the close codes and error codes the code defines.
func codesInSource(t *testing.T) (closeCodes, errCodes map[string]bool) {
	closeCodes = map[string]bool{"1000": true, "1006": true} // the client's normal and abnormal closure
	errCodes = map[string]bool{}
	root := testenv.RepoRoot(t)
	for _, dir := range []string{"internal/engine", "session", "transport", "hub", "bridge", "cluster", "proxy", "directory"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range codeDecl.FindAllStringSubmatch(string(b), -1) {
				closeCodes[m[1]+m[2]] = true
			}
			for _, m := range errDecl.FindAllStringSubmatch(string(b), -1) {
				errCodes[m[1]+m[2]] = true
			}
		}
	}
	// gorilla/websocket's close codes the transport uses by name (1003
	// and 1007 through CodeUnsupportedData and CodeInvalidUTF8).
	for _, c := range []int{1001, 1002, 1003, 1007, 1009, 1011, 1013} {
		closeCodes[strconv.Itoa(c)] = true
	}
	return closeCodes, errCodes
}

// TestDocsErrorCodes: every close code and hub or API error code the docs
// name is one the code sends.
func TestDocsErrorCodes(t *testing.T) {
	closeCodes, errCodes := codesInSource(t)
	if len(errCodes) < 5 {
		t.Fatalf("found only %d error codes in the source: %v", len(errCodes), errCodes)
	}
	for _, d := range docs(t) {
		for _, m := range append(closeRow.FindAllStringSubmatch(d.text, -1), closeFrame.FindAllStringSubmatch(d.text, -1)...) {
			c := m[1]
			if len(m) > 2 {
				c += m[2]
			}
			if !closeCodes[c] {
				t.Errorf("%s names the close code %s, which the server never sends", d.name, c)
			}
		}
		for _, line := range strings.Split(d.text, "\n") {
			if !errorsLine.MatchString(line) {
				continue
			}
			for _, m := range errWord.FindAllStringSubmatch(line, -1) {
				if !errCodes[m[1]] {
					t.Errorf("%s names the error code %s, which does not exist:\n%s", d.name, m[1], line)
				}
			}
		}
	}
}

// TestDocsExample: the README's library example is examples/echo/main.go
// as it is (from its package clause), so the example shown builds.
func TestDocsExample(t *testing.T) {
	root := testenv.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "examples", "echo", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(src), "package main")
	if i < 0 {
		t.Fatal("examples/echo/main.go has no package clause")
	}
	if !strings.Contains(string(readme), "```go\n"+string(src[i:])+"```\n") {
		t.Error("README.md does not show examples/echo/main.go (from `package main`) verbatim in a go block")
	}
}

// shellWords splits a command line as sh would for the docs' examples:
// words, single or double quotes, and a comment from # to the end.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '#' && !in:
			return words
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// docCommands is every command in the docs' sh blocks that runs the server
// (bin/sockjsd, continuation lines joined), as words.
func docCommands(text string) [][]string {
	var out [][]string
	inBlock := false
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			inBlock = !inBlock && strings.TrimPrefix(l, "```") == "sh"
			continue
		}
		if !inBlock || !strings.HasPrefix(l, "bin/sockjsd ") {
			continue
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + lines[i]
		}
		out = append(out, shellWords(l))
	}
	return out
}

// TestDocsExecExamples: the -exec examples in the docs run on a stock
// machine: each program they name (from -exec-dir, or on PATH), each
// directory, and each file given in -exec-env, exists.
func TestDocsExecExamples(t *testing.T) {
	root := testenv.RepoRoot(t)
	seen := 0
	for _, d := range docs(t) {
		for _, words := range docCommands(d.text) {
			dir := root
			var progs, files []string
			for i := 1; i+1 < len(words); i++ {
				v := words[i+1]
				switch words[i] {
				case "-exec-dir":
					dir = filepath.Join(root, v)
					files = append(files, dir)
				case "-exec-pages":
					files = append(files, filepath.Join(root, v))
				case "-exec":
					if j := strings.Index(v, "="); strings.HasPrefix(v, "/") && j > 0 {
						v = v[j+1:]
					}
					if f := strings.Fields(v); len(f) > 0 {
						progs = append(progs, f[0])
					}
				case "-exec-env":
					if _, val, _ := strings.Cut(v, "="); filepath.IsAbs(val) {
						files = append(files, val)
					}
				}
			}
			for _, p := range progs {
				seen++
				if strings.Contains(p, "/") {
					if !filepath.IsAbs(p) {
						p = filepath.Join(dir, p)
					}
					if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
						t.Errorf("%s: %q runs %s, which is not an executable file (%v)", d.name, strings.Join(words, " "), p, err)
					}
				} else if _, err := exec.LookPath(p); err != nil {
					t.Errorf("%s: %q runs %s, which is not on PATH", d.name, strings.Join(words, " "), p)
				}
			}
			for _, f := range files {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("%s: %q needs %s: %v", d.name, strings.Join(words, " "), f, err)
				}
			}
		}
	}
	if seen < 4 {
		t.Fatalf("found only %d programs in the docs' -exec examples", seen)
	}
}

// TestLogtailDefault: examples/exec/logtail.sh without LOG_FILE follows the
// chat room's file, which it creates, so log.html works on any machine.
func TestLogtailDefault(t *testing.T) {
	testenv.SkipIfShort(t, "tail")
	root := testenv.RepoRoot(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./logtail.sh")
	cmd.Dir = filepath.Join(root, "examples", "exec")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// The script creates the room before it runs tail, which prints the
	// last lines of the file when it opens it and follows it from then on:
	// a line written once the file exists comes through either way.
	room := filepath.Join(tmp, "sockjsd-chat.log")
	for {
		if _, err := os.Stat(room); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("logtail.sh did not create the chat room's file within 20s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := os.WriteFile(room, []byte("* guest joined\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "* guest joined" {
		t.Fatalf("logtail.sh printed %q (%v), want the chat room's line", lines.Text(), lines.Err())
	}
}

var (
	historyRef = regexp.MustCompile(`(?i)\bissue #?\d+|\b(this|last|previous) round\b|before this (round|work|change)`)
	hashRef    = regexp.MustCompile(`\b[0-9a-f]{7,40}\b`)
)

// TestDocsNoHistory: README.md and docs/*.md describe what is, not how it
// came to be; issue numbers, work rounds and commit hashes belong in git.
func TestDocsNoHistory(t *testing.T) {
	for _, d := range docs(t) {
		for i, line := range strings.Split(d.text, "\n") {
			if m := historyRef.FindString(line); m != "" {
				t.Errorf("%s:%d names history (%q): %s", d.name, i+1, m, line)
			}
			for _, h := range hashRef.FindAllString(line, -1) {
				// A commit hash has letters and digits; a number or a word has not.
				if strings.ContainsAny(h, "0123456789") && strings.ContainsAny(h, "abcdef") {
					t.Errorf("%s:%d names what looks like a commit hash (%s): %s", d.name, i+1, h, line)
				}
			}
		}
	}
}
