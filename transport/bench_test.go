package transport

import (
	"strings"
	"testing"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

var benchFrames = map[string]*engine.Frame{
	"ascii64":   {Kind: session.FrameMessages, Messages: []string{strings.Repeat("x", 64)}},
	"unicode64": {Kind: session.FrameMessages, Messages: []string{strings.Repeat("zażółć ☃ ", 6)}},
	"batch16":   {Kind: session.FrameMessages, Messages: []string{"a", "bb", "ccc", "dddd", "a", "bb", "ccc", "dddd", "a", "bb", "ccc", "dddd", "a", "bb", "ccc", "dddd"}},
}

func BenchmarkAppendFrame(b *testing.B) {
	for name, f := range benchFrames {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = appendFrame(buf[:0], f)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecodeMessages(b *testing.B) {
	for name, payload := range map[string]string{
		"simple":  `["` + strings.Repeat("x", 64) + `"]`,
		"escaped": `["` + strings.Repeat(`x\"\u00e9`, 10) + `"]`,
	} {
		b.Run(name, func(b *testing.B) {
			p := []byte(payload)
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for i := 0; i < b.N; i++ {
				if _, err := DecodeMessages(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendQuoted(b *testing.B) {
	for _, tc := range []struct{ name, s string }{
		{"ascii64", strings.Repeat("x", 64)},
		{"unicode64", strings.Repeat("zażółć ☃ ", 6)},
		{"escapes64", strings.Repeat("\"\\\n\u200c", 16)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.s)))
			for i := 0; i < b.N; i++ {
				buf = AppendQuoted(buf[:0], tc.s)
			}
		})
	}
}
