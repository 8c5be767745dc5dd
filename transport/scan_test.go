package transport

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// plainLenRef is plainLen (html: plainHTMLLen) byte by byte.
func plainLenRef(w uint64, html bool) int {
	for k := 0; k < 8; k++ {
		c := byte(w >> (8 * k))
		if !plainByte[c] || html && (c == '<' || c == '>' || c == '&') {
			return k
		}
	}
	return 8
}

// TestPlainLen: the word functions agree with the byte table for every
// byte value at every position, after plain bytes and after bytes that
// borrow, and for random words.
func TestPlainLen(t *testing.T) {
	check := func(w uint64) {
		t.Helper()
		if got, want := plainLen(w), plainLenRef(w, false); got != want {
			t.Fatalf("plainLen(%#016x) = %d, want %d", w, got, want)
		}
		if got, want := plainHTMLLen(w), plainLenRef(w, true); got != want {
			t.Fatalf("plainHTMLLen(%#016x) = %d, want %d", w, got, want)
		}
	}
	for _, fill := range []byte{'x', ' ', '~', 0x21, 0x7f, 0x00, '"', 0xff} {
		for pos := 0; pos < 8; pos++ {
			for c := 0; c < 256; c++ {
				var w uint64
				for k := 0; k < 8; k++ {
					b := fill
					if k == pos {
						b = byte(c)
					} else if k < pos {
						b = 'x'
					}
					w |= uint64(b) << (8 * k)
				}
				check(w)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 1_000_000; n++ {
		w := r.Uint64()
		if n%2 == 0 {
			w &^= msb // mostly ASCII: the interesting half
		}
		check(w)
	}
}

// appendQuotedRef is appendQuoted written the simplest way, one rune at a
// time: the reference the fast one must match byte for byte. (Invalid
// UTF-8 comes out of range as U+FFFD, which needsEscape escapes.)
func appendQuotedRef(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r == '\t':
			dst = append(dst, `\t`...)
		case needsEscape(r) || html && strings.ContainsRune("<>&", r):
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return append(dst, '"')
}

// specials are the bytes the scanners must stop at, and neighbours that
// must not stop them.
var specials = []string{"\"", "\\", "\x00", "\x1f", " ", "\x7f", "<", ">", "&", "\n", "é", "\u2028", "\xff", "\\\"", "\\u00e9", "\xe2\x80"}

// alignedCases puts each special at every position of plain strings of
// 0 to 40 bytes: every path between the word loop and the byte loop.
func alignedCases() []string {
	var out []string
	for n := 0; n <= 40; n++ {
		out = append(out, strings.Repeat("x", n))
		for _, sp := range specials {
			for pos := 0; pos <= n; pos++ {
				out = append(out, strings.Repeat("x", pos)+sp+strings.Repeat("y", n-pos))
			}
		}
	}
	return out
}

func TestAppendQuotedMatchesByteLoop(t *testing.T) {
	for _, s := range alignedCases() {
		for _, html := range []bool{false, true} {
			got, want := appendQuoted(nil, s, html), appendQuotedRef(nil, s, html)
			if string(got) != string(want) {
				t.Fatalf("appendQuoted(%q, html=%v) = %s, want %s", s, html, got, want)
			}
		}
	}
}

// TestWalkPayloadAligned: the word loop accepts, refuses and unquotes what
// encoding/json does, whatever the position of the byte that matters.
func TestWalkPayloadAligned(t *testing.T) {
	for _, s := range alignedCases() {
		for _, p := range []string{`["` + s + `"]`, `"` + s + `"`, `["` + s + `","` + s + `"]`, `["` + s} {
			var want []string
			werr := json.Unmarshal([]byte(p), &want)
			if werr != nil && p[0] == '"' {
				var one string
				if json.Unmarshal([]byte(p), &one) == nil {
					want, werr = []string{one}, nil
				}
			}
			var got []string
			gerr := walkPayload([]byte(p), func(m string) bool { got = append(got, m); return true })
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("%q: encoding/json %v, walkPayload %v", p, werr, gerr)
			}
			if verr := validPayload(p); (verr == nil) != (gerr == nil) {
				t.Fatalf("%q: validPayload %v, walkPayload %v", p, verr, gerr)
			}
			if werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: walkPayload %q, encoding/json %q", p, got, want)
			}
		}
	}
}

// FuzzAppendQuoted: the word loop writes what the byte loop writes, and
// encoding/json reads the message back (invalid UTF-8 as U+FFFD).
func FuzzAppendQuoted(f *testing.F) {
	for _, s := range specials {
		f.Add(strings.Repeat("abcdefgh", 2)+s+"tail", false)
	}
	f.Add("", true)
	f.Add("<script>&amp;</script> plain text of some length", true)
	f.Add(`{"type":"chat","room":"lobby","text":"hello there, how are you?"}`, false)
	f.Fuzz(func(t *testing.T, s string, html bool) {
		got := appendQuoted(nil, s, html)
		if want := appendQuotedRef(nil, s, html); string(got) != string(want) {
			t.Fatalf("appendQuoted(%q, %v) = %s, want %s", s, html, got, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("appendQuoted(%q) = %s: not JSON: %v", s, got, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); utf8.ValidString(s) && back != want {
			t.Fatalf("appendQuoted(%q) reads back as %q", s, back)
		}
	})
}

func BenchmarkWalkPayload(b *testing.B) {
	for _, tc := range []struct{ name, p string }{
		{"ascii64", `["` + strings.Repeat("x", 64) + `"]`},
		{"unicode64", `["` + strings.Repeat("zażółć ☃ ", 6) + `"]`},
		{"escaped", `["` + strings.Repeat(`x\"\u00e9`, 10) + `"]`},
		{"json", `["{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"hello there, how are you?\"}"]`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := []byte(tc.p)
			n := 0
			emit := func(m string) bool { n += len(m); return true }
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for i := 0; i < b.N; i++ {
				if err := walkPayload(p, emit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
