package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestHixieKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint32
		ok   bool
	}{
		// draft-ietf-hybi-thewebsocketprotocol-00 (Hixie-76), section 1.3.
		{"18x 6]8vM;54 *(5:  {   U1]8  z [  8", 155712099, true},
		{"1_ tx7X d  <  nw  334J702) 7]o}` 0", 173347027, true},
		{"4 @1  46546xW%0l 1 5", 829309203, true}, // the protocol suite's
		{"12998 5 Y3 1  .P00", 259970620, true},
		{"", 0, false},
		{"12345", 0, false},                       // no spaces
		{"1 2 3", 0, false},                       // 123 / 2 is not whole
		{"9999999999 9", 0, false},                // 99999999999 / 1 > 32 bits
		{strings.Repeat("9", 40) + " ", 0, false}, // far too large
	} {
		got, err := hixieKey(tc.key)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("hixieKey(%q) = %d, %v; want %d, ok %v", tc.key, got, err, tc.want, tc.ok)
		}
	}
}

func TestHixieChallenge(t *testing.T) {
	for _, tc := range []struct {
		k1, k2 string
		key3   string
		want   string
	}{
		{"18x 6]8vM;54 *(5:  {   U1]8  z [  8", "1_ tx7X d  <  nw  334J702) 7]o}` 0", "Tm[K T2u", "fQJ,fN/4F4!~K~MH"},
		{"4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", "aaaaaaaa", "\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{"},
	} {
		k1, _ := hixieKey(tc.k1)
		k2, _ := hixieKey(tc.k2)
		if got := hixieChallenge(k1, k2, []byte(tc.key3)); string(got[:]) != tc.want {
			t.Errorf("challenge %q, want %q", got[:], tc.want)
		}
	}
}

// readAll reads frames until an error and returns the messages.
func readAllHixie(data []byte, limit int) ([]string, error) {
	br := bufio.NewReaderSize(bytes.NewReader(data), 16) // small: frames span buffer refills
	var msgs []string
	m := testMsgReader(limit)
	for {
		data, err := m.readHixieFrame(context.Background(), br)
		msgs = append(msgs, string(data))
		m.done()
		if n := m.budget.InUse(); n != 0 {
			return msgs, fmt.Errorf("%d bytes of the message budget still reserved after done", n)
		}
		if err != nil {
			return msgs[:len(msgs)-1], err
		}
	}
}

func TestReadHixieFrame(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name string
		in   string
		want []string
		err  error
	}{
		{"text", "\x00o\xff\x00a[\"x\"]\xff", []string{"o", `a["x"]`}, io.EOF},
		{"empty", "\x00\xff", []string{""}, io.EOF},
		{"spansBuffer", "\x00" + long + "\xff", []string{long}, io.EOF},
		{"closing", "\x00a\xff\xff\x00\x00b\xff", []string{"a"}, errHixieClosing},
		{"otherTextTypeSkipped", "\x01skip\xff\x00kept\xff", []string{"kept"}, io.EOF},
		{"binarySkipped", "\x80\x03abc\x00kept\xff", []string{"kept"}, io.EOF},
		{"binaryLongLength", "\x80\x81\x00" + strings.Repeat("b", 128) + "\x00k\xff", []string{"k"}, io.EOF},
		{"tooBig", "\x00" + long + long + "\xff", nil, errTooBig},
		{"binaryTooBig", "\x80\xff\xff\xff\x7f", nil, errTooBig},
		{"unterminated", "\x00abc", nil, io.EOF},
		{"truncatedLength", "\x80\x81", nil, io.EOF},
		{"truncatedBinary", "\x80\x05ab", nil, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAllHixie([]byte(tc.in), 150)
			if !errors.Is(err, tc.err) || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// FuzzReadHixieFrame: whatever the bytes, the reader ends with an error
// (never loops or panics), and no message exceeds the limit.
func FuzzReadHixieFrame(f *testing.F) {
	for _, s := range []string{"\x00o\xff", "\x00\xff", "\xff\x00", "\x80\x03abc", "\x80\x81\x00", "\x01a\xff\x00b\xff", "\x00\xc3\x28\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 64
		msgs, err := readAllHixie(data, limit)
		if err == nil {
			t.Fatal("reading ended without an error")
		}
		total := 0
		for _, m := range msgs {
			if len(m) > limit {
				t.Fatalf("message of %d bytes past the limit %d", len(m), limit)
			}
			if strings.IndexByte(m, 0xFF) >= 0 {
				t.Fatalf("message %q holds a frame end", m)
			}
			total += len(m)
		}
		if total > len(data) {
			t.Fatalf("%d message bytes out of %d bytes read", total, len(data))
		}
	})
}
