package transport

import (
	"context"
	"encoding/json"
	"sync"
	"unicode/utf8"

	"github.com/sockjsd/sockjsd/internal/engine"
)

// Decoding a send payload one message at a time. DecodeMessages returns
// every message of a payload at once, and a 1 MiB body of tiny strings
// ("a","a",…) becomes 250,000 string headers, several times the body's
// size, for every concurrent request. deliverPayload instead checks the
// whole payload first (a payload with an error delivers nothing, as the
// protocol requires) and then hands the messages to the session in small
// chunks, each message its own copy, so that what a request holds beyond
// its body is one chunk, and the session's receive queue bounds the rest.

// Chunk bounds for deliverValid (and the most deliverPayload reads in one pass).
const (
	chunkMessages = 64
	chunkBytes    = 64 << 10
)

// onePass is how many messages a payload may have to be read once, into
// an array on the reading goroutine's stack (no pool, no allocation).
const onePass = 8

// deliverPayload delivers the messages of payload b to s, the transport's
// own (the service ping's pongs, h.withoutPongs) taken out. It returns
// ErrBrokenJSON or ErrNoPayload (nothing delivered) for a bad payload, or
// Deliver's error.
//
// A payload of up to onePass messages (nearly every websocket message and
// most sends) is read once: its messages are collected as it is checked,
// and delivered once all of it passed. A larger one is checked whole
// first, then delivered chunk by chunk (deliverValid): the one pass stopped
// at its ninth message, so at most eight copies were made for nothing.
func deliverPayload[T string | []byte](ctx context.Context, h *Handler, s *engine.Session, b T) error {
	var arr [onePass]string
	chunk, size, fits := arr[:0], 0, true
	err := walkPayload(b, func(m string) bool {
		if len(chunk) == onePass || size >= chunkBytes {
			fits = false
			return false
		}
		chunk = append(chunk, m)
		size += len(m)
		return true
	})
	if !fits {
		if err = walkPayload(b, nil); err == nil {
			return deliverValid(ctx, h, s, b)
		}
	}
	if err != nil || len(chunk) == 0 {
		return err
	}
	// Deliver keeps the messages, never the slice: arr stays on the stack.
	return s.Deliver(ctx, h.withoutPongs(s, chunk))
}

// chunkPool holds deliverValid's chunks (1 KiB each), so that delivering a
// large payload does not allocate one: Deliver keeps the messages, never
// the slice. Chunks go back cleared.
var chunkPool = sync.Pool{New: func() any { c := make([]string, 0, chunkMessages); return &c }}

// deliverValid delivers the messages of b, a payload validPayload
// accepted, in chunks of chunkMessages or chunkBytes.
func deliverValid[T string | []byte](ctx context.Context, h *Handler, s *engine.Session, b T) error {
	cp := chunkPool.Get().(*[]string)
	defer func() {
		clear((*cp)[:cap(*cp)]) // a failed delivery may leave messages in it
		chunkPool.Put(cp)
	}()
	chunk := (*cp)[:0]
	size := 0
	var derr error
	flush := func() bool {
		derr = s.Deliver(ctx, h.withoutPongs(s, chunk))
		clear(chunk)
		chunk, size = chunk[:0], 0
		return derr == nil
	}
	_ = walkPayload(b, func(m string) bool {
		chunk = append(chunk, m)
		size += len(m)
		if len(chunk) == chunkMessages || size >= chunkBytes {
			return flush()
		}
		return true
	})
	if derr == nil && len(chunk) > 0 {
		flush()
	}
	return derr
}

// validPayload reports whether b is a payload DecodeMessages accepts,
// without building the messages.
func validPayload[T string | []byte](b T) error { return walkPayload(b, nil) }

// walkPayload parses what DecodeMessages parses (a JSON array of strings,
// or one JSON string) and calls emit, when not nil, with each message in
// order until it returns false. Strings without escapes are copied out of
// b; others go through encoding/json, which decides escapes and replaces
// invalid UTF-8 as DecodeMessages does.
func walkPayload[T string | []byte](b T, emit func(string) bool) error {
	i := skipSpace(b, 0)
	if i == len(b) {
		return ErrNoPayload
	}
	if b[i] == '"' {
		j, err := walkString(b, i, emit)
		if err != nil {
			return err
		}
		if skipSpace(b, j) != len(b) {
			return ErrBrokenJSON
		}
		return nil
	}
	if b[i] != '[' {
		return ErrBrokenJSON
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		if skipSpace(b, i+1) != len(b) {
			return ErrBrokenJSON
		}
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return ErrBrokenJSON
		}
		j, err := walkString(b, i, emit)
		if err != nil {
			return err
		}
		if j < 0 { // emit said stop
			return nil
		}
		i = skipSpace(b, j)
		if i >= len(b) {
			return ErrBrokenJSON
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			if skipSpace(b, i+1) != len(b) {
				return ErrBrokenJSON
			}
			return nil
		default:
			return ErrBrokenJSON
		}
	}
}

func skipSpace[T string | []byte](b T, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// walkString reads the JSON string starting at b[i] == '"', emits it (if
// emit is not nil) and returns the index after its closing quote, or -1
// if emit returned false.
func walkString[T string | []byte](b T, i int, emit func(string) bool) (int, error) {
	simple, ascii := true, true
	j := i + 1
	for j < len(b) {
		c := b[j]
		if c >= utf8.RuneSelf {
			ascii = false
			j++
			continue
		}
		if plainByte[c] {
			// A word only where two plain bytes start a run (n >= 2
			// then): runs of one (a space between words of text that
			// is not ASCII) cost no more than the byte loop. Only a
			// string that goes on past a whole plain word costs a call.
			// Spelled out here and twice in appendQuoted: as a function
			// it would not inline (cost 218 of 80), and a call per run
			// is what made text that is not ASCII slower (measured).
			if j+8 > len(b) || !plainByte[b[j+1]] {
				j++
			} else if n := plainLen(load64(b, j)); n < 8 {
				j += n
			} else {
				j = skipPlain(b, j+8)
			}
			continue
		}
		if c == '"' {
			break
		}
		if c == '\\' {
			simple = false
			j += 2 // the escaped byte cannot end the string
			continue
		}
		return 0, ErrBrokenJSON // c < 0x20: the rest of what is not plainByte
	}
	if j >= len(b) {
		return 0, ErrBrokenJSON
	}
	tok := b[i : j+1]
	if simple && !ascii && !validUTF8(tok) {
		simple = false // encoding/json replaces what is invalid
	}
	var m string
	switch {
	case simple:
		if emit != nil {
			m = string(tok[1 : len(tok)-1])
		}
	case emit == nil:
		if !json.Valid([]byte(tok)) {
			return 0, ErrBrokenJSON
		}
	default:
		// Its own variable: one whose address goes to Unmarshal lives
		// on the heap, and m would then cost an allocation per message.
		var u string
		if err := json.Unmarshal([]byte(tok), &u); err != nil {
			return 0, ErrBrokenJSON
		}
		m = u
	}
	if emit != nil && !emit(m) {
		return -1, nil
	}
	return j + 1, nil
}

func validUTF8[T string | []byte](b T) bool {
	switch v := any(b).(type) {
	case string:
		return utf8.ValidString(v)
	case []byte:
		return utf8.Valid(v)
	}
	return false
}
