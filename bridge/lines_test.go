package bridge

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 10000) // longer than the reader's buffer
	cases := []struct {
		name, in string
		max      int
		want     []string
		err      error
	}{
		{"lines", "a\nb\n\nc\n", 10, []string{"a", "b", "", "c"}, io.EOF},
		{"crlf", "a\r\nb\r\n", 10, []string{"a", "b"}, io.EOF},
		{"last without newline", "a\nlast", 10, []string{"a", "last"}, io.EOF},
		{"exactly max", "12345\n", 5, []string{"12345"}, io.EOF},
		{"one over max", "123456\n", 5, nil, errLineTooLong},
		{"last line over max", "123456", 5, nil, errLineTooLong},
		{"long line within max", long + "\nb\n", 10000, []string{long, "b"}, io.EOF},
		{"long line over max", "a\n" + long + "\n", 9999, []string{"a"}, errLineTooLong},
	}
	for _, tc := range cases {
		lr := newLineReader(strings.NewReader(tc.in), tc.max)
		var got []string
		var err error
		for {
			var line []byte
			line, err = lr.next()
			if err != nil {
				break
			}
			got = append(got, string(line))
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) || !errors.Is(err, tc.err) {
			t.Errorf("%s: got %d lines %.40q, %v; want %.40q, %v", tc.name, len(got), got, err, tc.want, tc.err)
		}
	}
}
