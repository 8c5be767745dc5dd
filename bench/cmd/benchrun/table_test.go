package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 62583.4: "62,583", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestPerSession(t *testing.T) {
	top := `Showing nodes accounting for 20000B, 100% of 20000B total
      flat  flat%   sum%        cum   cum%
   10000B 50.00% 50.00%     10000B 50.00%  bufio.NewReaderSize (inline)
    5000B 25.00% 75.00%      5000B 25.00%  github.com/sockjsd/sockjsd/session.newSession
       0B     0%   100%      5000B 25.00%  net/http.(*conn).serve
`
	got := perSession(top, 10)
	for _, want := range []string{"1000  bufio.NewReaderSize (inline)", "500  github.com/sockjsd/sockjsd/session.newSession"} {
		if !strings.Contains(got, want) {
			t.Errorf("perSession lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "conn).serve") {
		t.Errorf("perSession kept a site that allocated nothing itself:\n%s", got)
	}
}

func TestWriteDocKeepsTheRest(t *testing.T) {
	path := t.TempDir() + "/bench.md"
	doc := "# B\n\nintro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\nafter\n<!-- soak:begin -->\nsoak\n<!-- soak:end -->\n"
	if err := osWrite(path, doc); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(path, "new table", false); err != nil {
		t.Fatal(err)
	}
	got := osRead(t, path)
	if !strings.Contains(got, "<!-- bench:begin -->\nnew table\n<!-- bench:end -->\nafter\n<!-- soak:begin -->\nsoak\n") || strings.Contains(got, "old") {
		t.Errorf("writeDoc:\n%s", got)
	}
	if err := writeDoc(path, "x", true); err != nil || !strings.Contains(osRead(t, path), "<!-- soak:begin -->\nx\n<!-- soak:end -->") {
		t.Errorf("soak section not replaced: %v", err)
	}
}

func osWrite(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

func osRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestQuantileInterpolates(t *testing.T) {
	before := buckets{0.01: 0, 0.1: 0, 1: 0, inf(): 0}
	after := buckets{0.01: 50, 0.1: 90, 1: 100, inf(): 100}
	if q := quantile(before, after, .5); q != 0.01 {
		t.Errorf("p50 = %v, want 0.01", q)
	}
	if q := quantile(before, after, .95); q < 0.1 || q > 1 {
		t.Errorf("p95 = %v, want within (0.1, 1]", q)
	}
	if q := quantile(after, after, .5); q != 0 {
		t.Errorf("no observations: %v, want 0", q)
	}
}

func inf() float64 { f, _ := strconv.ParseFloat("+Inf", 64); return f }
