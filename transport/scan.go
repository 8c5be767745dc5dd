package transport

import "math/bits"

// Scanning JSON string contents eight bytes at a time. Every message a
// client sends is checked and unquoted (walkString) and every message the
// server sends is quoted (appendQuoted). Byte by byte, those loops were a
// third of sockjsd's own instructions per websocket echo of 64 bytes
// (counted with valgrind: make bench-count, docs/bench.md "Instructions
// per message"); most messages are plain ASCII, which the word loop below
// passes over at a few instructions per eight bytes, leaving the byte
// loops only what needs a decision.

const (
	lsb = 0x0101010101010101 // the low bit of every byte
	msb = 0x8080808080808080 // the high bit of every byte
)

// plainByte[c]: c stands for itself inside a JSON string, in both
// directions: printable ASCII but '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// zeroBytes flags (with its high bit) each zero byte of x. The lowest
// flag is exact; one above a zero byte may be false (a borrow), which is
// all plainLen needs.
func zeroBytes(x uint64) uint64 { return (x - lsb) &^ x & msb }

// notPlain flags the bytes of w that are not plainByte: from 0x80 up,
// below 0x20, '"' and '\\'. Only its lowest flag is exact (zeroBytes).
func notPlain(w uint64) uint64 {
	return (w|(w-lsb*0x20)&^w)&msb | zeroBytes(w^(lsb*'"')) | zeroBytes(w^(lsb*'\\'))
}

// plainLen returns how many of w's bytes, lowest (first in memory)
// first, are plainByte before the first that is not: 8 for all of them.
func plainLen(w uint64) int { return bits.TrailingZeros64(notPlain(w)) >> 3 }

// plainHTMLLen is plainLen that also stops at '<', '>' and '&' (the
// htmlfile transport's strings sit inside a <script> element).
func plainHTMLLen(w uint64) int {
	return bits.TrailingZeros64(notPlain(w)|zeroBytes(w^(lsb*'<'))|zeroBytes(w^(lsb*'>'))|zeroBytes(w^(lsb*'&'))) >> 3
}

// load64 reads b[i:i+8] as a little-endian word (the compiler makes it
// one load for both string and []byte).
func load64[T string | []byte](b T, i int) uint64 {
	b = b[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// skipPlain returns the index of the first byte of b from i on that is
// not plainByte, or len(b), eight bytes at a time.
func skipPlain[T string | []byte](b T, i int) int {
	for i+8 <= len(b) {
		n := plainLen(load64(b, i))
		if i += n; n < 8 {
			return i
		}
	}
	for i < len(b) && plainByte[b[i]] {
		i++
	}
	return i
}

// skipPlainHTML is skipPlain that also stops at '<', '>' and '&'.
func skipPlainHTML(s string, i int) int {
	for i+8 <= len(s) {
		n := plainHTMLLen(load64(s, i))
		if i += n; n < 8 {
			return i
		}
	}
	for i < len(s) && plainHTMLByte(s[i]) {
		i++
	}
	return i
}

func plainHTMLByte(c byte) bool { return plainByte[c] && c != '<' && c != '>' && c != '&' }
