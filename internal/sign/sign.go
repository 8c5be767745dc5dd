// Package sign computes and checks the X-Sockjsd-Signature header that
// sockjsd puts on every request it makes to a backend (the session proxy,
// hub hooks, webhooks). The wire format is fixed (docs/proxy.md):
//
//	X-Sockjsd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">
//
// The timestamp is inside the MAC so that a captured request cannot be
// replayed once it is older than the receiver's tolerance, and the body is
// inside it so that it cannot be changed.
package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the header the signature travels in.
const Header = "X-Sockjsd-Signature"

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock; the examples use the same.
const DefaultTolerance = 5 * time.Minute

// Value returns the header value for body signed at t with secret.
func Value(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("sign: malformed signature header")
	ErrStale     = errors.New("sign: timestamp outside the tolerance")
	ErrMismatch  = errors.New("sign: signature does not match")
)

// Verify checks a header value against body: the MAC must match and t
// must be within tolerance of now (DefaultTolerance when tolerance <= 0).
// Several v1= values are accepted (any one matching), so that a sender can
// sign with an old and a new secret while secrets rotate.
func Verify(secret []byte, value string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs []string
	for _, part := range strings.Split(value, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrMismatch
}
