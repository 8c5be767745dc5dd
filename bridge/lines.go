package bridge

import (
	"bufio"
	"errors"
	"io"
)

var errLineTooLong = errors.New("output line too long")

// lineReader splits a program's output into lines of at most max bytes.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte // a line longer than the bufio buffer, being assembled
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, min(max+1, 4<<10)), max: max}
}

// next returns the next line without its "\n" (nor a "\r" before it),
// valid until the next call. A last line without "\n" is returned before
// io.EOF. A line over max bytes is errLineTooLong.
func (l *lineReader) next() ([]byte, error) {
	l.buf = l.buf[:0]
	if cap(l.buf) > 64<<10 {
		l.buf = nil // one huge line must not pin its memory for the session's life
	}
	for {
		frag, err := l.r.ReadSlice('\n')
		n := len(frag)
		if err == nil {
			n-- // the newline does not count
		}
		if len(l.buf)+n > l.max {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			line := frag
			if len(l.buf) > 0 {
				l.buf = append(l.buf, frag...)
				line = l.buf
			}
			line = line[:len(line)-1]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			l.buf = append(l.buf, frag...)
		default:
			l.buf = append(l.buf, frag...)
			if len(l.buf) > 0 {
				return l.buf, nil // the last line; the next call gets err again
			}
			return nil, err
		}
	}
}
