package main

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

func TestBusyScannerCountsSplitFrames(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int64
	}{
		{`c[2010,"Another connection still open"]` + "\n", 1},
		{"o\n", 0},
		{strings.Repeat("h", 2048) + "\n" + `c[2010,"Another connection still open"]` + "\n", 1},
		{`a["c[2010,"]` + "\n" + `c[2010,"x"]`, 2},
	} {
		var n atomic.Int64
		// OneByteReader splits every occurrence across reads.
		s := &busyScanner{ReadCloser: io.NopCloser(iotest.OneByteReader(strings.NewReader(tc.body))), n: &n}
		if _, err := io.Copy(io.Discard, s); err != nil {
			t.Fatal(err)
		}
		if n.Load() != tc.want {
			t.Errorf("%q: counted %d, want %d", tc.body, n.Load(), tc.want)
		}
	}
}
