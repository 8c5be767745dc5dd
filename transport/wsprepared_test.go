package transport

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// TestSharedFrame: a message's frame is shared from its second write on,
// only for that string (address and length): another string with the
// same bytes, a part of it or a batch never gets it.
func TestSharedFrame(t *testing.T) {
	msg := strings.Repeat("hub \"message\" ", 4) // a new string, not a constant
	one := func(m string) *engine.Frame { return &engine.Frame{Kind: session.FrameMessages, Messages: []string{m}} }
	if p := sharedFrame(one(msg)); p != nil {
		t.Fatal("shared on its first write")
	}
	p := sharedFrame(one(msg))
	if p == nil {
		t.Fatal("not shared on its second write")
	}
	if want := len(appendFrame(nil, one(msg))); p.size != want {
		t.Fatalf("size %d, want %d", p.size, want)
	}
	if q := sharedFrame(one(msg)); q != p {
		t.Fatal("a third write built its own frame")
	}
	for _, tc := range []struct {
		name string
		f    *engine.Frame
	}{
		{"same bytes, another string", one(strings.Clone(msg))},
		{"a prefix of it", one(msg[:len(msg)-1])},
		{"a batch", &engine.Frame{Kind: session.FrameMessages, Messages: []string{msg, msg}}},
		{"empty", one("")},
		{"over the size", one(strings.Repeat("x", sharedMaxBytes+1))},
	} {
		// A frame may be built for it (a prefix shares msg's address),
		// but only its own.
		q := sharedFrame(tc.f)
		if q == p || q != nil && (len(tc.f.Messages) != 1 || q.size != len(appendFrame(nil, tc.f)) || q.data != unsafe.StringData(tc.f.Messages[0])) {
			t.Errorf("%s: got the frame of another message %+v", tc.name, q)
		}
	}
}
