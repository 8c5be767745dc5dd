package testenv

import (
	"crypto/rand"
	"encoding/base64"
)

// NewID returns a fresh session id for a test's URLs: 128 crypto-random
// bits, base64url-encoded, like the server's own ids (engine.NewID). It
// is here, not in package session, because only a client (a test) needs
// to make one; and it is a copy rather than a call because the engine's
// tests import this package.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("testenv: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
