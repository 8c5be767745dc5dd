package transport

import "net/http"

// Header values the HTTP transports put on every answer, built once and
// assigned to the header map (setHeader) instead of Header.Set, which
// allocates a slice per value on every request, several per message on
// xhr-polling. net/http copies the values when it writes the answer's
// head (Header.Clone), and nothing writes into them in place; their
// capacity is their length, so an Add after ours appends to a copy.
var (
	hdrNoCache       = []string{"no-store, no-cache, no-transform, must-revalidate, max-age=0"}
	hdrTextPlain     = []string{"text/plain; charset=UTF-8"}
	hdrJavaScript    = []string{"application/javascript; charset=UTF-8"}
	hdrJSON          = []string{"application/json; charset=UTF-8"}
	hdrAnyOrigin     = []string{"*"}
	hdrTrue          = []string{"true"}
	hdrVaryOrigin    = []string{"Origin"}
	hdrNoBuffering   = []string{"no"}
	hdrNoSniff       = []string{"nosniff"}
	hdrConnClose     = []string{"close"}
	hdrMaxAgeOneYear = []string{"31536000"}
)

// setHeader sets key, which must be in canonical form, to the shared
// values v.
func setHeader(h http.Header, key string, v []string) { h[key] = v[:len(v):len(v)] }
