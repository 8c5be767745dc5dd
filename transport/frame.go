package transport

import (
	"encoding/json"
	"errors"
	"github.com/sockjsd/sockjsd/internal/engine"
	"strconv"
	"unicode/utf8"

	"github.com/sockjsd/sockjsd/session"
)

// appendFrame appends the protocol encoding of f: "o", "h", `a["m1","m2"]`
// or `c[3000,"Go away!"]`, without a transport's own framing.
func appendFrame(dst []byte, f *engine.Frame) []byte {
	switch f.Kind {
	case session.FrameMessages:
		dst = append(dst, 'a', '[')
		for i, m := range f.Messages {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendQuoted(dst, m)
		}
		return append(dst, ']')
	case session.FrameClose:
		dst = append(dst, 'c', '[')
		dst = strconv.AppendInt(dst, int64(f.Code), 10)
		dst = append(dst, ',')
		dst = AppendQuoted(dst, f.Reason)
		return append(dst, ']')
	default:
		return append(dst, byte(f.Kind))
	}
}

const hex = "0123456789abcdef"

// needsEscape reports whether the protocol requires r to travel as \uXXXX:
// controls, and the ranges that browsers mangle or drop (zero-width and
// direction marks, line/paragraph separators, invisible operators and the
// specials block). sockjs-protocol's escapable_by_server.
func needsEscape(r rune) bool {
	switch {
	case r < 0x20:
		return true
	case r < 0x200c:
		return false
	case r <= 0x200f, r >= 0x2028 && r <= 0x202f, r >= 0x2060 && r <= 0x206f:
		return true
	case r >= 0xfff0 && r <= 0xffff:
		return true
	}
	return false
}

// AppendQuoted appends s as a JSON string with SockJS's escaping. Invalid
// UTF-8 becomes U+FFFD, as encoding/json does.
func AppendQuoted(dst []byte, s string) []byte {
	return appendQuoted(dst, s, false)
}

// appendQuoted; html also escapes <, > and & so that the string can sit
// inside a <script> element (htmlfile) without ending it.
func appendQuoted(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			// Plain runs as in walkString: a word where two plain bytes
			// start one, a call only past a whole plain word.
			if c >= 0x20 && c != '"' && c != '\\' && !html {
				if i+8 > len(s) || !plainByte[s[i+1]] {
					i++
				} else if n := plainLen(load64(s, i)); n < 8 {
					i += n
				} else {
					i = skipPlain(s, i+8)
				}
				continue
			}
			if html && plainHTMLByte(c) {
				if i+8 > len(s) || !plainHTMLByte(s[i+1]) {
					i++
				} else if n := plainHTMLLen(load64(s, i)); n < 8 {
					i += n
				} else {
					i = skipPlainHTML(s, i+8)
				}
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if needsEscape(r) {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Errors from decoding what a client sent.
// Their text is the response body the protocol requires, word for word.
var (
	//lint:ignore ST1005 the protocol's exact response body
	ErrNoPayload = errors.New("Payload expected.")
	//lint:ignore ST1005 the protocol's exact response body
	ErrBrokenJSON = errors.New("Broken JSON encoding.")
)

// DecodeMessages parses what a client sends: a JSON array of strings (the
// HTTP send endpoints and sockjs-client's websocket), or a single JSON
// string (allowed on websockets). An empty array is a valid heartbeat and
// yields no messages.
func DecodeMessages(b []byte) ([]string, error) {
	if msgs, ok := decodeSimple(b); ok {
		return msgs, nil
	}
	// Skip JSON whitespace to find out which form this is.
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) {
		return nil, ErrNoPayload
	}
	switch b[i] {
	case '[':
		var msgs []string
		if err := json.Unmarshal(b, &msgs); err != nil {
			return nil, ErrBrokenJSON
		}
		return msgs, nil
	case '"':
		var m string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, ErrBrokenJSON
		}
		return []string{m}, nil
	}
	return nil, ErrBrokenJSON
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// decodeSimple is the fast path for the common payload: an array of
// strings without escapes or control characters, in valid UTF-8. The
// messages share one copy of the payload. Anything else (ok false) goes to
// encoding/json, which decides what is valid.
func decodeSimple(b []byte) (msgs []string, ok bool) {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' || !utf8.Valid(b) {
		return nil, false
	}
	s := string(b)
	i := 1
	n := 0
	for i < len(s)-1 {
		if s[i] != '"' {
			return nil, false
		}
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' || s[j] < 0x20 {
				return nil, false
			}
			j++
		}
		if j >= len(s)-1 {
			return nil, false
		}
		if msgs == nil {
			msgs = make([]string, 0, 1)
		}
		msgs = append(msgs, s[i+1:j])
		n++
		i = j + 1
		if s[i] == ',' && i+1 < len(s)-1 {
			i++
		} else if i != len(s)-1 {
			return nil, false
		}
	}
	if n == 0 && len(s) != 2 {
		return nil, false
	}
	return msgs, true
}
