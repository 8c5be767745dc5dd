package bridge

import (
	"errors"
	"fmt"
	"strings"
)

// ParseCommand splits a command line into argv with a small, predictable
// subset of shell quoting, so that no shell runs unless the command asks
// for one (`sh -c '...'`):
//
//   - words are separated by unquoted spaces, tabs and newlines;
//   - 'single quotes' keep everything up to the next single quote;
//   - "double quotes" keep everything up to the next unescaped double
//     quote; inside them a backslash escapes only " and \;
//   - outside quotes a backslash keeps the next character as it is;
//   - a pair of quotes with nothing between them is an empty argument.
//
// Nothing else is special: no $variables, globs, ~, pipes, redirections
// or comments.
func ParseCommand(s string) ([]string, error) {
	var (
		argv  []string
		cur   strings.Builder
		inArg bool // cur holds a word, possibly empty ("")
	)
	end := func() {
		if inArg {
			argv = append(argv, cur.String())
			cur.Reset()
			inArg = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			end()
		case '\\':
			if i+1 >= len(s) {
				return nil, errors.New("command ends with a lone backslash")
			}
			i++
			cur.WriteByte(s[i])
			inArg = true
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote at byte %d", i)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inArg = true
		case '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inArg = true
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	end()
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return argv, nil
}
