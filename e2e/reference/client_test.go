package reference

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

// TestSockJSClientUnderNode drives the real sockjs-client 1.6.1 (under node)
// against our /echo, forcing one transport at a time.
func TestSockJSClientUnderNode(t *testing.T) {
	dir := nodeDir(t)
	base := startOurs(t, transport.Options{ResponseLimit: 32 << 10})

	var msgs []string
	msgs = append(msgs, "hello", "", " leading space", "zażółć gęślą jaźń ☃ 😀 中文", "\u2028\u2029\u200c\ufeff\uffff",
		"control \x00\x01\x1f\t\n\r chars", `quotes " and \ backslashes`, "</script><script>alert(1)</script>")
	for i := 0; i < 20; i++ {
		msgs = append(msgs, "message "+strings.Repeat("x", i))
	}
	msgs = append(msgs, strings.Repeat("64KiB ", 64<<10/6)+"end", strings.Repeat("é", 32<<10))
	b, _ := json.Marshal(msgs)
	file := filepath.Join(t.TempDir(), "messages.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tr := range []string{"websocket", "xhr-streaming", "xhr-polling"} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "client.js", base+"/echo", tr, file)
			cmd.Dir = dir
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			var res struct {
				Transport string
				Sent      int
				Echoed    int
				Mismatch  any
				CloseCode int
				Error     string
				RttMs     []float64
			}
			if jerr := json.Unmarshal(out, &res); jerr != nil {
				t.Fatalf("client output %q: %v (exit: %v)", out, jerr, err)
			}
			if err != nil || res.Transport != tr || res.Echoed != len(msgs) || res.Mismatch != nil || res.CloseCode != 1000 {
				t.Fatalf("transport %s: %+v (exit: %v)", tr, res, err)
			}
			sort.Float64s(res.RttMs)
			t.Logf("%-14s %d messages echoed in order; round trip p50 %.0f ms, max %.0f ms", tr, res.Echoed,
				res.RttMs[len(res.RttMs)/2], res.RttMs[len(res.RttMs)-1])
		})
	}
}
